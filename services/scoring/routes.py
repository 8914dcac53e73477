"""HTTP routes of the scoring service (/v1): thin wrappers over ScoringService.

The prediction routes are written once (`add_prediction_routes`) and added once per way of
naming the model, each resolving it through the model repository: `/v1/<route>` (the
default model), `/v1/aliases/{alias}/<route>` (the default model at another alias it is
served at) and `/v1/models/{model}/<route>` (a model by name). The model a request
resolves to is what a scoped key must cover (`requested_model`, in `dependencies.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from visiondock.auth import NOTHING
from visiondock.errors import DomainError, InvalidInput
from visiondock.limits import loads_bounded
from visiondock.web import Caller, http_status, require_role

from .dependencies import (
    ModelChoice,
    Scoring,
    default_model,
    model_at_alias,
    model_by_name,
    predict_role,
    requested_model,
)
from .inputs import NamedImage, image_from_request, images_from_batch_request, read_body
from .model import LoadedModel
from .render import FORMATS
from .schemas import BatchResponse, ModelStatus, PredictResponse, ServedModelsStatus, SkillRequest, SkillResponse
from .service import ScoringService
from .skills import SkillRunner

_PREDICTS = [predict_role()]
# Azure AI Search presents its key in its own header; only the skill routes accept it.
_SKILL_KEY = [predict_role(azure_header=True)]

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


async def _skill(request: Request, kind: str, model: LoadedModel) -> dict[str, Any]:
    scoring: ScoringService = request.app.state.scoring
    body = await read_body(request, scoring.settings.scoring_max_request_bytes)
    payload = await scoring.off_loop(loads_bounded, body)
    runner: SkillRunner = request.app.state.skills
    return await runner.run(kind, payload, model=model)


def add_prediction_routes(router: APIRouter, prefix: str, choose: ModelChoice, *, tags: Sequence[str] = ()) -> None:
    """The prediction routes at `prefix` on `router`, scoring with the model `choose` gives."""
    model_dependency = Depends(choose)

    @router.post(f"{prefix}/predict", response_model=PredictResponse, response_model_exclude_unset=True,
                 tags=["predict", *tags], openapi_extra=_IMAGE_BODY,
                 dependencies=_PREDICTS,
                 summary="Score one image: a multipart `file`, the raw image as the body, or JSON "
                         "`{\"image_base64\"}`")
    async def predict(request: Request, model: LoadedModel = model_dependency) -> dict[str, Any]:
        scoring: ScoringService = request.app.state.scoring
        data = await image_from_request(request, max_bytes=scoring.settings.scoring_max_body_bytes,
                                        offload=scoring.off_loop)
        return await scoring.predict(data, model=model)

    @router.post(f"{prefix}/predict/batch", response_model=BatchResponse, response_model_exclude_unset=True,
                 tags=["predict", *tags], openapi_extra=_BATCH_BODY, dependencies=_PREDICTS,
                 summary="Score several images: multipart `files`, or JSON `{\"images\": [...]}`; each image "
                         "succeeds or fails on its own")
    async def predict_batch(request: Request, model: LoadedModel = model_dependency) -> dict[str, Any]:
        scoring: ScoringService = request.app.state.scoring
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
                answer = await scoring.predict(image.data, model=model, source="batch", filename=image.name)
                return {"name": image.name, "status": 200, "answer": answer, "error": None}
            except DomainError as exc:
                return {"name": image.name, "status": http_status(exc), "answer": None,
                        "error": {"detail": exc.message, "code": exc.code}}

        results = await asyncio.gather(*(one(image) for image in images))
        succeeded = sum(r["status"] == 200 for r in results)
        return {"succeeded": succeeded, "failed": len(results) - succeeded, "results": results}

    @router.post(f"{prefix}/render", tags=["predict", *tags], openapi_extra=_IMAGE_BODY, response_class=Response,
                 dependencies=_PREDICTS,
                 responses={200: {"content": {"image/jpeg": {}, "image/png": {}},
                                  "description": "The image with the answer drawn on it."}},
                 summary="The image back (JPEG or PNG) with boxes and labels drawn on it")
    async def render(request: Request, model: LoadedModel = model_dependency,
                     fmt: str | None = Query(None, alias="format",
                                             description="jpeg or png (default: from Accept, else jpeg)"),
                     ) -> Response:
        scoring: ScoringService = request.app.state.scoring
        if fmt is None:
            fmt = "png" if "image/png" in request.headers.get("accept", "") else "jpeg"
        fmt = fmt.lower().replace("jpg", "jpeg")
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be jpeg or png; got {fmt!r}")
        data = await image_from_request(request, max_bytes=scoring.settings.scoring_max_body_bytes,
                                        offload=scoring.off_loop)
        picture, answer = await scoring.render(data, model=model, fmt=fmt)
        headers = {"X-Model": answer["model"], "X-Model-Version": str(answer["version"]),
                   "X-Label": str(answer.get("label"))[:200].encode("ascii", "replace").decode(),
                   "X-Uncertain": str(answer["uncertain"]).lower()}
        return Response(picture, media_type=FORMATS[fmt][1], headers=headers)

    @router.post(f"{prefix}/skills/classify", response_model=SkillResponse, tags=["azure-ai-search", *tags],
                 openapi_extra=_SKILL_BODY, dependencies=_SKILL_KEY,
                 summary="Azure AI Search custom skill: classify each record's image")
    async def skill_classify(request: Request, model: LoadedModel = model_dependency) -> dict[str, Any]:
        return await _skill(request, "classify", model)

    @router.post(f"{prefix}/skills/detect", response_model=SkillResponse, tags=["azure-ai-search", *tags],
                 openapi_extra=_SKILL_BODY, dependencies=_SKILL_KEY,
                 summary="Azure AI Search custom skill: detect objects in each record's image")
    async def skill_detect(request: Request, model: LoadedModel = model_dependency) -> dict[str, Any]:
        return await _skill(request, "detect", model)


# -- the /v1 router: the prediction routes per mount, and the served models --------------------
# Each route declares its role (predictions, skills with the Azure header, refresh).
router = APIRouter(prefix="/v1")
add_prediction_routes(router, "", default_model)
add_prediction_routes(router, "/aliases/{alias}", model_at_alias, tags=["aliases"])
add_prediction_routes(router, "/models/{model}", model_by_name, tags=["models"])


@router.get("/models", tags=["models"], response_model=ServedModelsStatus,
            dependencies=[Depends(require_role("predict", scope=NOTHING))],
            summary="The models this service serves by name that the key may use, loaded or not, with their "
                    "readiness, and the memory budget")
async def served_models(scoring: Scoring, caller: Caller) -> dict[str, Any]:
    return scoring.repository.listing(caller.allows)


@router.get("/model", tags=["model"], response_model=ModelStatus, dependencies=_PREDICTS,
            summary="The default model, every alias it is served at, and the registry's reachability")
async def model_info(scoring: Scoring) -> dict[str, Any]:
    return scoring.status()


@router.post("/model/refresh", tags=["model"], response_model=ModelStatus,
             dependencies=[Depends(require_role("train", resource=requested_model))],
             summary="Check the aliases now (a deploy notification) instead of at the next poll")
async def refresh_models(scoring: Scoring) -> dict[str, Any]:
    await run_in_threadpool(scoring.repository.refresh)
    return scoring.status()
