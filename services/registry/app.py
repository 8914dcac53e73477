"""The registry service: model versions, their files and metrics, and aliases.

`create_app()` builds the FastAPI app; `python -m services.registry` serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from visiondock.openapi_docs import Link, document_api
from visiondock.settings import Settings
from visiondock.storage import open_blob_store, open_document_store
from visiondock.web import Readiness, create_service_app

from .catalog import ModelRegistry
from .routes import router


def _readiness(app: FastAPI) -> Readiness:
    ready = getattr(app.state, "registry", None) is not None
    return Readiness(ready, {"storage": "open" if ready else "starting"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        documents = open_document_store(settings)
        blobs = open_blob_store(settings)
        app.state.registry = ModelRegistry(documents, blobs, run_lost_after=settings.run_lost_after_seconds)
        try:
            yield
        finally:
            app.state.registry = None
            documents.close()
            blobs.close()

    app = create_service_app(
        service="registry",
        settings=settings,
        description="Model versions with their ONNX files and metrics, and the aliases that deploy them.",
        readiness=_readiness,
        lifespan=lifespan,
    )
    app.include_router(router)
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
