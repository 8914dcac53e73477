"""The registry service: model versions, their files and metrics, and aliases.

`create_app()` builds the FastAPI app; `python -m services.registry` serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from visiondock.auth import RunKeys
from visiondock.job_contract import KubernetesSettings
from visiondock.openapi_docs import Link, document_api
from visiondock.settings import Settings
from visiondock.storage import Stores
from visiondock.web import create_service_app

from .alias_routes import router as alias_router
from .catalog import ModelCatalog
from .dashboard import router as dashboard_router
from .insight_routes import router as insight_router
from .launched_runs import RunLaunches
from .local_trainers import open_local_trainer_launcher
from .routes import router
from .run_routes import router as run_router

if TYPE_CHECKING:  # the `kubernetes` extra; a registry that starts no Jobs runs without it
    from .kubernetes_jobs import TrainingJobLauncher


def _parts(stores: Stores) -> dict[str, Any]:
    settings = stores.settings
    catalog = ModelCatalog(stores.documents, stores.blobs, run_lost_after=settings.run_lost_after_seconds)
    secret = settings.run_key_secret_bytes()
    return {"catalog": catalog, "launches": RunLaunches(catalog.runs, _training_jobs(),
                                                        local=open_local_trainer_launcher(settings, catalog.runs),
                                                        keys=RunKeys(secret) if secret is not None else None,
                                                        key_lifetime=settings.run_key_lifetime_seconds)}


@asynccontextmanager
async def _lifespan(app: FastAPI, stores: Stores) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if app.state.launches.jobs is not None:
            app.state.launches.jobs.close()
        if app.state.launches.local is not None:
            app.state.launches.local.close()


def _training_jobs() -> TrainingJobLauncher | None:
    """The Kubernetes launcher, where the chart set VISIONDOCK_KUBERNETES_TRAINER_CRONJOB."""
    kubernetes = KubernetesSettings()
    if not kubernetes.trainer_cronjob:
        return None
    # Imported only here: the `kubernetes` package is an extra that a registry starting no Jobs lacks.
    from .kubernetes_jobs import TrainingJobLauncher

    return TrainingJobLauncher.from_environment(kubernetes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        service="registry",
        settings=settings,
        description="Model versions with their ONNX files and metrics, and the aliases that deploy them.",
        routers=[router, alias_router, run_router, insight_router, dashboard_router],
        parts=_parts,
        lifespan=_lifespan,
        # The dashboard's page and scripts hold no data; every number on it comes from a keyed API call.
        open_paths=("/dashboard", "/dashboard/assets/{name}", "/dashboard/common/{name}"),
    )
    document_api(app, links=LINKS)
    return app


_MODEL = "/v1/models/{model}"
LINKS = [
    Link(("POST", f"{_MODEL}/versions"), 201, ("GET", f"{_MODEL}/versions/{{version}}"),
         {"model": "$request.path.model", "version": "$response.body#/version"}),
    Link(("PUT", f"{_MODEL}/aliases/{{alias}}"), 200, ("GET", f"{_MODEL}/aliases/{{alias}}"),
         {"model": "$request.path.model", "alias": "$request.path.alias"}),
    Link(("POST", "/v1/runs"), 201, ("GET", "/v1/runs/{run_id}"), {"run_id": "$response.body#/id"}),
]
