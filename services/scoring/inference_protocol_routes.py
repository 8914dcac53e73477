"""Open Inference Protocol v2 routes (/v2), as KServe and Triton clients expect them.

Health routes are open like /healthz; model routes need a `predict` key. Errors carry the
protocol's `{"error": "..."}` beside our `detail` and `code`. The per-model routes are
written once (`add_model_routes`) and added at `/v2/models/{name}` (whichever version is
served) and at `/v2/models/{name}/versions/{version}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.routing import APIRoute

from visiondock.errors import DomainError, Unavailable
from visiondock.web import domain_error_response

from . import inference_protocol
from .dependencies import Scoring, predict_role
from .inputs import read_body
from .model import LoadedModel
from .schemas import InferRequest, InferResponse, ModelMetadata
from .served_model import ServedModel


class _ProtocolErrors(APIRoute):
    """Answer domain errors (auth included) with the protocol's `error` field."""

    protocol_errors = True  # the request guard's refusals carry it too

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_protocol_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                return domain_error_response(exc, error=exc.message)

        return with_protocol_errors


_INFER_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


# A dependency naming the version a mount serves (None: whichever is served).
VersionChoice = Callable[..., Awaitable[int | None]]


async def any_version() -> int | None:
    return None


async def pinned_version(version: Annotated[int, Path(description="A version this service serves.")]) -> int:
    return version


def add_model_routes(router: APIRouter, prefix: str, choose_version: VersionChoice) -> None:
    """The per-model routes at `prefix` (which holds `{name}`), for the version `choose_version` names."""

    async def resolved(scoring: Scoring, name: Annotated[str, Path(description="The model's name.")],
                       version: int | None = Depends(choose_version)) -> ServedModel:
        return scoring.repository.resolve(name, version=version)

    async def served(scoring: Scoring, model: ServedModel = Depends(resolved)) -> LoadedModel:
        # Loads it again if the memory budget had unloaded it; 503 saying why when it cannot serve.
        return await scoring.repository.serving(model)

    model_dependency = Depends(served)
    # The model's name is in every model route's path, so a scoped key is checked against it.
    authenticated = [predict_role(resource=None)]

    @router.get(prefix, response_model=ModelMetadata, dependencies=authenticated,
                summary="The model's inputs, outputs and labels")
    async def model_metadata(model: LoadedModel = model_dependency) -> dict[str, Any]:
        return inference_protocol.model_metadata(model)

    @router.get(f"{prefix}/ready", dependencies=authenticated, summary="Whether the model is ready",
                responses={503: {"description": "The model is served here but not ready."}})
    async def model_ready(request: Request, scoring: Scoring, response: Response,
                          model: ServedModel = Depends(resolved)) -> dict[str, Any]:
        try:
            await scoring.repository.serving(model)
        except Unavailable as exc:
            response.status_code = 503
            return {**request.path_params, "ready": False, "error": exc.message}
        why = model.not_ready_because()
        response.status_code = 200 if why is None else 503
        return {**request.path_params, "ready": why is None, **({"error": why} if why else {})}

    @router.post(f"{prefix}/infer", response_model=InferResponse, response_model_exclude_unset=True,
                 dependencies=authenticated, openapi_extra=_INFER_BODY,
                 summary="Run FP32 input tensors through the model")
    async def infer(request: Request, scoring: Scoring, model: LoadedModel = model_dependency) -> dict[str, Any]:
        body = await read_body(request, scoring.settings.scoring_max_request_bytes)
        # Parsing JSON numbers is slow for a big tensor: not on the event loop.
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


@router.get("/health/ready", summary="Readiness: every model that exists for the served targets is loaded",
            responses={503: {"description": "A model that exists is not loaded yet."}})
async def ready(scoring: Scoring, response: Response) -> dict[str, bool]:
    is_ready = not scoring.not_ready_because()
    response.status_code = 200 if is_ready else 503
    return {"ready": is_ready}


add_model_routes(router, "/models/{name}", any_version)
add_model_routes(router, "/models/{name}/versions/{version}", pinned_version)
