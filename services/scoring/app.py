"""The scoring service: serves the model behind a registry alias over REST.

`create_app()` builds the FastAPI app; `python -m services.scoring` serves it. Routes:
/v1 (predict, batch, render, Azure AI Search skills, model status) and the Open
Inference Protocol's /v2. The service reports ready once the primary model is loaded;
`/readyz` also says whether the registry was reachable at the last check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.storage import Stores
from visiondock.web import Readiness, create_service_app

from .capture import CaptureSink
from .inference_protocol_routes import router as inference_protocol_router
from .metrics import ScoringMetrics
from .routes import router
from .service import ScoringService
from .settings import ScoringSettings
from .skills import ImageFetcher, SkillRunner
from .watcher import ModelWatcher


def _readiness(app: FastAPI) -> Readiness:
    scoring: ScoringService | None = getattr(app.state, "scoring", None)
    if scoring is None:
        return Readiness(False, {"model": None})
    return Readiness(scoring.watcher().current is not None, scoring.status())


def _watchers(settings: ScoringSettings, registry: RegistryClient | None,
              metrics: ScoringMetrics) -> dict[str, ModelWatcher]:
    if settings.scoring_model_path is not None:
        return {settings.primary_slot: ModelWatcher(settings, None, slot=settings.primary_slot,
                                                    path=settings.scoring_model_path, metrics=metrics)}
    watchers = {settings.primary_slot: ModelWatcher(
        settings, registry, slot=settings.primary_slot, alias=settings.scoring_alias,
        version=settings.scoring_version, metrics=metrics)}
    secondary = settings.scoring_secondary_alias
    if secondary:
        watchers[secondary] = ModelWatcher(settings, registry, slot=secondary, alias=secondary, metrics=metrics)
    return watchers


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI, stores: Stores) -> AsyncIterator[None]:
        key = settings.api_key.get_secret_value()
        metrics = ScoringMetrics(app.state.metrics.registry)
        registry = None if settings.scoring_model_path else RegistryClient(settings.registry_url, key, retries=1,
                                                                            timeout=30.0)
        capture = None
        if settings.scoring_capture_rate > 0:
            capture = CaptureSink(rate=settings.scoring_capture_rate, blobs=stores.blobs,
                                  annotation=AnnotationClient(settings.annotation_url, key, timeout=10.0, retries=2),
                                  project_override=settings.scoring_capture_project,
                                  queue_size=settings.scoring_capture_queue_size, metrics=metrics)
        scoring = ScoringService(settings, _watchers(settings, registry, metrics), metrics=metrics, capture=capture)
        fetcher = ImageFetcher(settings)
        # Load before accepting traffic, so a service whose model exists starts ready.
        for watcher in scoring.watchers.values():
            await run_in_threadpool(watcher.refresh)
        scoring.start()
        app.state.scoring = scoring
        app.state.skills = SkillRunner(scoring, fetcher)
        try:
            yield
        finally:
            scoring.stop()
            await fetcher.close()
            if registry is not None:
                registry.close()
            if capture is not None and capture.annotation is not None:
                capture.annotation.close()

    return create_service_app(
        service="scoring",
        settings=settings,
        description="Predictions from the model version behind a registry alias: REST, Azure AI Search custom "
                    "skills and the Open Inference Protocol, with dynamic batching and hot model swaps.",
        routers=[router, inference_protocol_router],
        lifespan=lifespan,
        readiness=_readiness,
    )
