"""The scoring service: serves the model behind a registry alias over REST.

`create_app()` builds the FastAPI app; `python -m services.scoring` serves it. Routes:
/v1 (predict, batch, render, Azure AI Search skills, model status) and the Open
Inference Protocol's /v2, each finding its model through the model repository
(`repository.py`). The service is ready once every model that exists for its targets is
loaded (`ModelRepository.not_ready_because`); `/readyz` also says whether the registry
was reachable at the last check.
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
from .model import Device
from .repository import ModelRepository
from .routes import router
from .schemas import InferRequest, SkillRequest
from .service import ScoringService
from .settings import ScoringSettings
from .skills import SkillRunner


def _readiness(app: FastAPI) -> Readiness:
    scoring: ScoringService | None = getattr(app.state, "scoring", None)
    if scoring is None:
        return Readiness(False, {"model": None})
    return Readiness(not scoring.not_ready_because(), scoring.status())


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
        repository = ModelRepository(settings, registry, device=Device(expect_gpu=settings.scoring_require_gpu),
                                     metrics=metrics)
        # Load before accepting traffic, so a service whose models exist starts ready.
        await run_in_threadpool(repository.load_at_start)
        scoring = ScoringService(settings, repository, metrics=metrics, capture=capture)
        fetcher = GuardedFetcher(settings)
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
        open_paths=("/v2", "/v2/health/live", "/v2/health/ready"),
    )
    # Predictions also answer 503 + Retry-After when the queue is full and 504 past the timeout.
    document_api(app, extra_statuses={"/v1": (429, 503, 504), "/v2/models": (429, 503, 504)},
                 body_models=[SkillRequest, InferRequest])
    return app
