"""Open Inference Protocol v2 routes (/v2), as KServe and Triton clients expect them.

Health routes are open like /healthz; model routes need a `predict` key. Errors carry the
protocol's `{"error": "..."}` beside our `detail` and `code`. The per-model routes are
written once (`add_model_routes`) and added at `/v2/models/{name}` (whichever version is
served) and at `/v2/models/{name}/versions/{version}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.routing import APIRoute

from visiondock.errors import DomainError, NotFound
from visiondock.web import domain_error_response, require_role

from . import inference_protocol
from .inputs import read_body
from .model import LoadedModel
from .routes import SCORING_BODY
from .schemas import InferRequest, InferResponse, ModelMetadata
from .service import ScoringService


class _ProtocolErrors(APIRoute):
    """Answer domain errors (auth included) with the protocol's `error` field."""

    protocol_errors = True  # the request guard's refusals carry it too

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def with_protocol_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                return domain_error_response(exc, error=exc.message)

        return with_protocol_errors


_INFER_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


async def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring


Scoring = Annotated[ScoringService, Depends(_scoring)]


async def _served(scoring: ScoringService, name: str, version: str | None) -> LoadedModel:
    """The loaded model called `name` (at `version`, when given, among the served slots)."""
    if name in scoring.models.names():
        await scoring.models.use(name)  # loads it again if the memory budget had unloaded it
    loaded = [w.current for w in scoring.all_watchers() if w.current is not None]
    if not loaded:
        scoring.model()  # 503 saying why nothing is loaded
    matching = [m for m in loaded if m.name == name]
    if not matching:
        served = sorted({m.name for m in loaded} | set(scoring.models.names()))
        raise NotFound(f"model {name!r} is not served here; this service serves {', '.join(served)}",
                       code="model_not_served")
    if version is None:
        return matching[0]
    for model in matching:
        if str(model.version) == version:
            return model
    raise NotFound(f"version {version} of {name!r} is not served here; served: "
                   f"{', '.join(str(m.version) for m in matching)}")


# A dependency naming the version a mount serves (None: whichever is served).
VersionChoice = Callable[..., str | None]


async def any_version() -> str | None:
    return None


async def pinned_version(version: Annotated[str, Path(description="A version this service serves.")]) -> str:
    return version


def add_model_routes(router: APIRouter, prefix: str, choose_version: VersionChoice) -> None:
    """The per-model routes at `prefix` (which holds `{name}`), for the version `choose_version` names."""

    async def served(scoring: Scoring, name: Annotated[str, Path(description="The model's name.")],
                     version: str | None = Depends(choose_version)) -> LoadedModel:
        return await _served(scoring, name, version)

    model_dependency = Depends(served)
    # The model's name is in every model route's path, so a scoped key is checked against it.
    authenticated = [Depends(require_role("predict")), SCORING_BODY]

    @router.get(prefix, response_model=ModelMetadata, dependencies=authenticated,
                summary="The model's inputs, outputs and labels")
    async def model_metadata(model: LoadedModel = model_dependency) -> dict[str, Any]:
        return inference_protocol.model_metadata(model)

    @router.get(f"{prefix}/ready", dependencies=authenticated, summary="Whether the model is loaded")
    async def model_ready(request: Request, model: LoadedModel = model_dependency) -> dict[str, Any]:
        # `served` answers 404 or 503 for a model that is not loaded: any answer from here is ready.
        return {**request.path_params, "ready": True}

    @router.post(f"{prefix}/infer", response_model=InferResponse, response_model_exclude_unset=True,
                 dependencies=authenticated, openapi_extra=_INFER_BODY,
                 summary="Run FP32 input tensors through the model")
    async def infer(request: Request, scoring: Scoring, model: LoadedModel = model_dependency) -> dict[str, Any]:
        body = await read_body(request, scoring.settings.scoring_max_request_bytes)
        # Parsing a megabyte of JSON numbers takes tens of milliseconds: not on the event loop.
        inputs, names, request_id = await scoring.off_loop(inference_protocol.parse_infer_request, body, model)
        outputs = await scoring.infer_tensor(model, inputs)
        return await scoring.off_loop(inference_protocol.infer_response, model, outputs, names, request_id)


router = APIRouter(prefix="/v2", route_class=_ProtocolErrors, tags=["v2"])


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "visiondock-scoring", "version": "2", "extensions": []}


@router.get("/health/live", summary="Liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Readiness: a model is loaded", responses={503: {"description": "No model "
                                                                                                   "loaded yet."}})
async def ready(scoring: Scoring, response: Response) -> dict[str, bool]:
    is_ready = scoring.ready()
    response.status_code = 200 if is_ready else 503
    return {"ready": is_ready}


add_model_routes(router, "/models/{name}", any_version)
add_model_routes(router, "/models/{name}/versions/{version}", pinned_version)
