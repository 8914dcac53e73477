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
from visiondock.openapi_docs import document_api
from visiondock.storage import Stores
from visiondock.web import Readiness, create_service_app

from .capture import CaptureSink
from .fetch_guard import GuardedFetcher
from .inference_protocol_routes import router as inference_protocol_router
from .metrics import ScoringMetrics
from .routes import router
from .schemas import InferRequest, SkillRequest
from .served_models import ServedModels
from .service import ScoringService
from .settings import ScoringSettings
from .skills import SkillRunner
from .watcher import ModelWatcher


def _readiness(app: FastAPI) -> Readiness:
    scoring: ScoringService | None = getattr(app.state, "scoring", None)
    if scoring is None:
        return Readiness(False, {"model": None})
    return Readiness(scoring.ready(), scoring.status())


def _watchers(settings: ScoringSettings, registry: RegistryClient | None,
              metrics: ScoringMetrics) -> dict[str, ModelWatcher]:
    """The slots of /v1/... and /v1/aliases/{alias}/...: the primary model and its second alias."""
    if settings.scoring_model_path is not None:
        return {settings.primary_slot: ModelWatcher(settings, None, slot=settings.primary_slot,
                                                    path=settings.scoring_model_path, metrics=metrics)}
    primary = settings.primary_target
    if primary is None and settings.model_targets:  # only `*@alias`: the first model discovered is primary
        return {}
    name = primary.name if primary else ""
    watchers = {settings.primary_slot: ModelWatcher(
        settings, registry, slot=settings.primary_slot, alias=primary.alias if primary else settings.scoring_alias,
        version=primary.version if primary else None, model=name, metrics=metrics)}
    secondary = settings.scoring_secondary_alias
    if secondary:
        watchers[secondary] = ModelWatcher(settings, registry, slot=secondary, alias=secondary, model=name,
                                           metrics=metrics)
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
            capture = CaptureSink(rate=settings.scoring_capture_rate, documents=stores.documents,
                                  annotation=AnnotationClient(settings.annotation_url, key, timeout=10.0, retries=2),
                                  project_override=settings.scoring_capture_project,
                                  queue_size=settings.scoring_capture_queue_size, metrics=metrics)
        watchers = _watchers(settings, registry, metrics)
        primary = watchers.get(settings.primary_slot)
        models = ServedModels(settings, registry, primary=primary if settings.scoring_model_path is None else None,
                              metrics=metrics)
        scoring = ScoringService(settings, watchers, metrics=metrics, capture=capture, models=models)
        fetcher = GuardedFetcher(settings)
        # Load before accepting traffic, so a service whose models exist starts ready.
        await run_in_threadpool(models.load_at_start)
        for watcher in watchers.values():
            await run_in_threadpool(watcher.refresh)
        await run_in_threadpool(models.discover)
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

    app = create_service_app(
        service="scoring",
        settings=settings,
        description="Predictions from the model version behind a registry alias: REST, Azure AI Search custom "
                    "skills and the Open Inference Protocol, with dynamic batching and hot model swaps.",
        routers=[router, inference_protocol_router],
        lifespan=lifespan,
        readiness=_readiness,
        # The Open Inference Protocol's server metadata and probes; the list of served models.
        open_paths=("/v2", "/v2/health/live", "/v2/health/ready", "/v1/models"),
    )
    # Predictions also answer 503 + Retry-After when the queue is full and 504 past the timeout.
    document_api(app, extra_statuses={"/v1": (429, 503, 504), "/v2/models": (429, 503, 504)},
                 body_models=[SkillRequest, InferRequest])
    return app
