"""What the scoring service's route modules share: the service on `app.state`, the model a request
resolves to through the model repository (as the dependency each mount scores with, and as the model a
scoped key must cover), and the bound on a request's body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request

from visiondock.web import require_role

from .model import LoadedModel
from .repository import ModelRepository
from .service import ScoringService


def requested_model(app: FastAPI, path_params: Mapping[str, Any]) -> str | None:
    """The name of the model a request resolves to: `/v1/models/{model}/...` names it, the other routes
    use the default model (None while there is none: they answer 503)."""
    model = path_params.get("model")
    if isinstance(model, str):
        return model
    scoring: ScoringService | None = getattr(app.state, "scoring", None)
    return scoring.repository.default_name() if scoring is not None else None


def request_bytes(app: FastAPI) -> int:
    # The largest body any scoring route takes; each route also caps what it reads itself.
    return app.state.settings.scoring_max_request_bytes


def predict_role(*, azure_header: bool = False, resource: Any = requested_model) -> Any:
    """The `predict` role as the scoring routes declare it, with their body bound in the same dependency
    (FastAPI solves each dependency of a route on every request)."""
    return Depends(require_role("predict", azure_header=azure_header, resource=resource, body_limit=request_bytes))


async def _scoring(request: Request) -> ScoringService:
    return request.app.state.scoring


Scoring = Annotated[ScoringService, Depends(_scoring)]


def repository_of(request: Request) -> ModelRepository:
    return request.app.state.scoring.repository


# A dependency giving the session a mount scores with, resolved through the repository (404 / 503 here,
# before a body that cannot be scored is read); it may take path parameters of the mount. One dependency
# per mount, not several nested ones: FastAPI solves each on every request.
ModelChoice = Callable[..., Awaitable[LoadedModel]]


async def default_model(request: Request) -> LoadedModel:
    repository = repository_of(request)
    return await repository.serving(repository.resolve())


async def model_at_alias(request: Request, alias: Annotated[
        str, Path(description="An alias the default model is served at, e.g. `staging`.")]) -> LoadedModel:
    repository = repository_of(request)
    return await repository.serving(repository.resolve(alias=alias))


async def model_by_name(request: Request, model: Annotated[
        str, Path(description="A model this service serves (GET /v1/models).")]) -> LoadedModel:
    repository = repository_of(request)
    return await repository.serving(repository.resolve(model))
