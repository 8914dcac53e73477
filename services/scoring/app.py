"""The scoring service: serves the model behind a registry alias over REST.

`create_app()` builds the FastAPI app; `python -m services.scoring` serves it. The
service reports ready only once a model is loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from visiondock.clients import RegistryClient
from visiondock.web import Readiness, create_service_app

from .routes import router
from .settings import ScoringSettings
from .watcher import ModelWatcher


def _readiness(app: FastAPI) -> Readiness:
    watcher: ModelWatcher | None = getattr(app.state, "watcher", None)
    if watcher is None:
        return Readiness(False, {"model": None})
    return Readiness(watcher.current is not None, watcher.status())


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = RegistryClient(settings.registry_url, settings.api_key.get_secret_value(), retries=1)
        watcher = ModelWatcher(settings, registry)
        app.state.watcher = watcher
        # Try once before accepting traffic, so a service whose model exists starts ready.
        await run_in_threadpool(watcher.refresh)
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()
            registry.close()

    app = create_service_app(
        service="scoring",
        settings=settings,
        description="Predictions from the model version behind a registry alias.",
        readiness=_readiness,
        lifespan=lifespan,
    )
    app.include_router(router)
    return app
