"""Open Inference Protocol v2 routes (/v2), as KServe and Triton clients expect them.

Health routes are open like /healthz; model routes need an API key. Errors carry the
protocol's `{"error": "..."}` beside our `detail` and `code`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from visiondock.errors import ApiError, NotFound
from visiondock.web import error_response, require_role

from . import oip
from .inputs import read_body
from .model import LoadedModel
from .routes import SCORING_BODY
from .schemas import InferRequest, InferResponse, ModelMetadata
from .service import ScoringService


class _ProtocolErrors(APIRoute):
    """Answer ApiErrors (auth included) with the protocol's `error` field."""

    protocol_errors = True  # the request guard's refusals carry it too

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def with_protocol_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.code, headers=exc.headers, error=exc.message)

        return with_protocol_errors


router = APIRouter(prefix="/v2", route_class=_ProtocolErrors)
# The model's name is in every model route's path, so a scoped key is checked against it.
_PREDICTS = [Depends(require_role("predict")), SCORING_BODY]
_INFER_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring


def _served(scoring: ScoringService, name: str, version: str | None) -> LoadedModel:
    """The loaded model called `name` (at `version`, when given, among the served slots)."""
    loaded = [w.current for w in scoring.watchers.values() if w.current is not None]
    if not loaded:
        scoring.model()  # 503 saying why nothing is loaded
    matching = [m for m in loaded if m.name == name]
    if not matching:
        raise NotFound(f"model {name!r} is not served here; this service serves "
                       f"{', '.join(sorted({m.name for m in loaded}))}")
    if version is None:
        return matching[0]
    for model in matching:
        if str(model.version) == version:
            return model
    raise NotFound(f"version {version} of {name!r} is not served here; served: "
                   f"{', '.join(str(m.version) for m in matching)}")


@router.get("", tags=["v2"], summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "visiondock-scoring", "version": "2", "extensions": []}


@router.get("/health/live", tags=["v2"], summary="Liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", tags=["v2"], summary="Readiness: a model is loaded",
            responses={503: {"description": "No model loaded yet."}})
async def ready(request: Request) -> JSONResponse:
    is_ready = _scoring(request).ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}", tags=["v2"], response_model=ModelMetadata, dependencies=_PREDICTS)
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    return oip.model_metadata(_served(_scoring(request), name, None))


@router.get("/models/{name}/versions/{version}", tags=["v2"], response_model=ModelMetadata,
            dependencies=_PREDICTS)
async def model_version_metadata(request: Request, name: str, version: str) -> dict[str, Any]:
    return oip.model_metadata(_served(_scoring(request), name, version))


@router.get("/models/{name}/ready", tags=["v2"], dependencies=_PREDICTS)
async def model_ready(request: Request, name: str) -> dict[str, Any]:
    return {"name": name, "ready": _served(_scoring(request), name, None) is not None}


@router.get("/models/{name}/versions/{version}/ready", tags=["v2"], dependencies=_PREDICTS)
async def model_version_ready(request: Request, name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "ready": _served(_scoring(request), name, version) is not None}


async def _infer(request: Request, name: str, version: str | None) -> JSONResponse:
    scoring = _scoring(request)
    model = _served(scoring, name, version)
    body = await read_body(request, scoring.settings.scoring_max_request_bytes)
    # Parsing a megabyte of JSON numbers takes tens of milliseconds: not on the event loop.
    inputs, names, request_id = await scoring.off_loop(oip.parse_infer_request, body, model)
    outputs = await scoring.infer_tensor(model, inputs)
    return JSONResponse(await scoring.off_loop(oip.infer_response, model, outputs, names, request_id))


@router.post("/models/{name}/infer", tags=["v2"], response_model=InferResponse, openapi_extra=_INFER_BODY,
             dependencies=_PREDICTS, summary="Run FP32 input tensors through the model")
async def infer(request: Request, name: str) -> JSONResponse:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", tags=["v2"], response_model=InferResponse,
             openapi_extra=_INFER_BODY, dependencies=_PREDICTS)
async def infer_version(request: Request, name: str, version: str) -> JSONResponse:
    return await _infer(request, name, version)
