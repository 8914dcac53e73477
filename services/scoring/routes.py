"""HTTP routes of the scoring service (/v1): thin wrappers over ScoringService.

Every prediction route exists twice: `/v1/<route>` serves the primary alias, and
`/v1/aliases/{alias}/<route>` a named one (the second alias served side by side).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from visiondock.errors import ApiError, BadRequest
from visiondock.limits import body_limit, loads_bounded
from visiondock.web import require_role

from .inputs import NamedImage, image_from_request, images_from_batch_request, read_body
from .render import FORMATS
from .schemas import BatchResponse, ModelStatus, PredictResponse, SkillRequest, SkillResponse
from .service import ScoringService
from .skills import SkillRunner

router = APIRouter(prefix="/v1")


def served_model(app: FastAPI) -> str | None:
    """The registry model this service serves: what a scoped key must cover to score."""
    return app.state.settings.scoring_model or None


def request_bytes(app: FastAPI) -> int:
    # The largest body any scoring route takes; each route also caps what it reads itself.
    return app.state.settings.scoring_max_request_bytes


SCORING_BODY = Depends(body_limit(request_bytes))
_PREDICTS = [Depends(require_role("predict", resource=served_model)), SCORING_BODY]
# Azure AI Search presents its key in its own header; only the skill routes accept it.
_SKILL_KEY = [Depends(require_role("predict", azure_header=True, resource=served_model)), SCORING_BODY]

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object", "properties": {
                "image_base64": {"type": "string"}}, "required": ["image_base64"]}},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
            "application/json": {"schema": {"type": "object", "properties": {"images": {
                "type": "array", "items": {"type": "object", "properties": {
                    "image_base64": {"type": "string"}, "name": {"type": "string"}}}}}}},
        },
    }
}
_SKILL_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": SkillRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring


# -- predictions ------------------------------------------------------------------------
async def _predict(request: Request, alias: str | None) -> JSONResponse:
    scoring = _scoring(request)
    scoring.model(alias)  # 404 / 503 before reading a body that cannot be scored
    data = await image_from_request(request, max_bytes=scoring.settings.scoring_max_body_bytes,
                                    offload=scoring.off_loop)
    return JSONResponse(await scoring.predict(data, slot=alias))


async def _predict_batch(request: Request, alias: str | None) -> JSONResponse:
    scoring = _scoring(request)
    scoring.model(alias)
    settings = scoring.settings
    images = await images_from_batch_request(request, max_bytes=settings.scoring_max_body_bytes,
                                             max_request_bytes=settings.scoring_max_request_bytes,
                                             max_images=settings.scoring_max_batch_images,
                                             offload=scoring.off_loop)

    async def one(image: NamedImage) -> dict[str, Any]:
        try:
            if image.error is not None:
                raise image.error
            assert image.data is not None
            answer = await scoring.predict(image.data, slot=alias, source="batch", filename=image.name)
            return {"name": image.name, "status": 200, "answer": answer, "error": None}
        except ApiError as exc:
            return {"name": image.name, "status": exc.status, "answer": None,
                    "error": {"detail": exc.message, "code": exc.code}}

    results = await asyncio.gather(*(one(image) for image in images))
    succeeded = sum(r["status"] == 200 for r in results)
    return JSONResponse({"succeeded": succeeded, "failed": len(results) - succeeded, "results": results})


async def _render(request: Request, alias: str | None, fmt: str | None) -> Response:
    scoring = _scoring(request)
    scoring.model(alias)
    if fmt is None:
        fmt = "png" if "image/png" in request.headers.get("accept", "") else "jpeg"
    fmt = fmt.lower().replace("jpg", "jpeg")
    if fmt not in FORMATS:
        raise BadRequest(f"format must be jpeg or png; got {fmt!r}")
    data = await image_from_request(request, max_bytes=scoring.settings.scoring_max_body_bytes,
                                    offload=scoring.off_loop)
    picture, answer = await scoring.render(data, slot=alias, fmt=fmt)
    headers = {"X-Model": answer["model"], "X-Model-Version": str(answer["version"]),
               "X-Label": str(answer.get("label"))[:200].encode("ascii", "replace").decode(),
               "X-Uncertain": str(answer["uncertain"]).lower()}
    return Response(picture, media_type=FORMATS[fmt][1], headers=headers)


async def _skill(request: Request, kind: str, alias: str | None) -> JSONResponse:
    scoring = _scoring(request)
    body = await read_body(request, scoring.settings.scoring_max_request_bytes)
    payload = await scoring.off_loop(loads_bounded, body)
    runner: SkillRunner = request.app.state.skills
    return JSONResponse(await runner.run(kind, payload, slot=alias))


_PREDICT = {"response_model": PredictResponse, "tags": ["predict"], "openapi_extra": _IMAGE_BODY,
            "dependencies": _PREDICTS,
            "summary": "Score one image: a multipart `file`, the raw image as the body, or JSON "
                       "`{\"image_base64\"}`"}
_BATCH = {"response_model": BatchResponse, "tags": ["predict"], "openapi_extra": _BATCH_BODY,
          "dependencies": _PREDICTS,
          "summary": "Score several images: multipart `files`, or JSON `{\"images\": [...]}`; each image "
                     "succeeds or fails on its own"}
_RENDER = {"tags": ["predict"], "openapi_extra": _IMAGE_BODY, "response_class": Response,
           "dependencies": _PREDICTS,
           "responses": {200: {"content": {"image/jpeg": {}, "image/png": {}},
                               "description": "The image with the answer drawn on it."}},
           "summary": "The image back (JPEG or PNG) with boxes and labels drawn on it"}
_SKILL = {"response_model": SkillResponse, "tags": ["azure-ai-search"], "openapi_extra": _SKILL_BODY,
          "dependencies": _SKILL_KEY}
RenderFormat = Query(None, alias="format", description="jpeg or png (default: from Accept, else jpeg)")


@router.post("/predict", **_PREDICT)
async def predict(request: Request) -> JSONResponse:
    return await _predict(request, None)


@router.post("/aliases/{alias}/predict", **_PREDICT)
async def predict_alias(request: Request, alias: str) -> JSONResponse:
    return await _predict(request, alias)


@router.post("/predict/batch", **_BATCH)
async def predict_batch(request: Request) -> JSONResponse:
    return await _predict_batch(request, None)


@router.post("/aliases/{alias}/predict/batch", **_BATCH)
async def predict_batch_alias(request: Request, alias: str) -> JSONResponse:
    return await _predict_batch(request, alias)


@router.post("/render", **_RENDER)
async def render(request: Request, fmt: str | None = RenderFormat) -> Response:
    return await _render(request, None, fmt)


@router.post("/aliases/{alias}/render", **_RENDER)
async def render_alias(request: Request, alias: str, fmt: str | None = RenderFormat) -> Response:
    return await _render(request, alias, fmt)


@router.post("/skills/classify", **_SKILL,
             summary="Azure AI Search custom skill: classify each record's image")
async def skill_classify(request: Request) -> JSONResponse:
    return await _skill(request, "classify", None)


@router.post("/skills/detect", **_SKILL, summary="Azure AI Search custom skill: detect objects in each record's "
                                                  "image")
async def skill_detect(request: Request) -> JSONResponse:
    return await _skill(request, "detect", None)


@router.post("/aliases/{alias}/skills/classify", **_SKILL, summary="The classify skill on a named alias")
async def skill_classify_alias(request: Request, alias: str) -> JSONResponse:
    return await _skill(request, "classify", alias)


@router.post("/aliases/{alias}/skills/detect", **_SKILL, summary="The detect skill on a named alias")
async def skill_detect_alias(request: Request, alias: str) -> JSONResponse:
    return await _skill(request, "detect", alias)


# -- the served models ------------------------------------------------------------------
@router.get("/model", tags=["model"], response_model=ModelStatus, dependencies=_PREDICTS,
            summary="The primary model, every served slot, and the registry's reachability")
async def model_info(request: Request) -> dict[str, Any]:
    return _scoring(request).status()


@router.post("/model/refresh", tags=["model"], response_model=ModelStatus,
             dependencies=[Depends(require_role("train"))],
             summary="Check the aliases now (a deploy notification) instead of at the next poll")
async def refresh_models(request: Request) -> dict[str, Any]:
    scoring = _scoring(request)
    for watcher in scoring.watchers.values():
        await run_in_threadpool(watcher.refresh)
    return scoring.status()
