"""HTTP routes of the scoring service."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from visiondock.errors import ApiError, BadRequest, Unavailable
from visiondock.images import decode_rgb
from visiondock.web import require_api_key

from .model import LoadedModel
from .schemas import PredictResponse
from .settings import ScoringSettings
from .watcher import ModelWatcher

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def read_image_bytes(request: Request, max_bytes: int) -> bytes:
    """The image from a multipart `file` field or from the raw body, refusing oversize bodies early."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise ApiError(f"request body is {int(declared):,} bytes; the limit is {max_bytes:,}", status=413)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise BadRequest("multipart body has no file: send the image in a field named 'file'")
        data = await upload.read(max_bytes + 1)
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ApiError(f"image is over the {max_bytes:,}-byte limit", status=413)
    if not data:
        raise BadRequest("no image: send it as the request body or in a multipart field named 'file'")
    return data


def _score(model: LoadedModel, data: bytes, settings: ScoringSettings) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    image = decode_rgb(data, max_pixels=settings.scoring_max_pixels, draft_size=model.card.preprocess.draft_size)
    timings["decode"] = (time.perf_counter() - started) * 1000
    mark = time.perf_counter()
    batch = model.preprocess([image])
    timings["preprocess"] = (time.perf_counter() - mark) * 1000
    mark = time.perf_counter()
    probabilities = model.infer(batch)
    timings["inference"] = (time.perf_counter() - mark) * 1000
    predictions = model.top_k(probabilities, settings.scoring_top_k)[0]
    return {
        "model": model.name,
        "version": model.version,
        "task": model.card.task,
        "predictions": [{"label": p.label, "probability": p.probability} for p in predictions],
        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
    }


@router.post("/predict", response_model=PredictResponse, tags=["predict"], openapi_extra=_IMAGE_BODY,
             summary="Classify one image (multipart `file` or the raw image as the body)")
async def predict(request: Request) -> dict[str, Any]:
    watcher: ModelWatcher = request.app.state.watcher
    settings: ScoringSettings = request.app.state.settings
    model = watcher.current
    if model is None:
        raise Unavailable(f"no model loaded yet ({watcher.target}): {watcher.last_error or 'loading'}",
                          headers={"Retry-After": "5"})
    data = await read_image_bytes(request, settings.scoring_max_body_bytes)
    return await run_in_threadpool(_score, model, data, settings)


@router.get("/model", tags=["model"], summary="The model being served and the alias it follows")
async def model_info(request: Request) -> dict[str, Any]:
    return request.app.state.watcher.status()
