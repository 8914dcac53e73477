"""Overload: a full service answers 503 with Retry-After at once, a request that waits past its
timeout gets 504, and both leave the service answering."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings

from .conftest import AUTH, AppFactory
from .tiny_models import solid


def test_a_full_queue_answers_503_with_retry_after(models: dict[str, Path], tmp_path: Path) -> None:
    settings = ScoringSettings(home=tmp_path, scoring_model_path=models["multiclass"], scoring_max_queue_size=2,
                               scoring_max_queue_delay_ms=50, log_format="text", log_level="WARNING")
    app = create_app(settings)
    image = solid((255, 0, 0))

    async def scenario() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://scoring", headers=AUTH) as client:
                burst = await asyncio.gather(*(client.post("/v1/predict", content=image) for _ in range(20)))
                after = await client.post("/v1/predict", content=image)
                return [*burst, after]

    responses = asyncio.run(scenario())
    statuses = [r.status_code for r in responses[:-1]]
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1" and "capacity" in refused.json()["detail"]
    assert responses[-1].status_code == 200


def test_a_request_past_its_timeout_gets_504(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["multiclass"], scoring_request_timeout_seconds=0.001, scoring_max_queue_delay_ms=200) as client:
        response = client.post("/v1/predict", content=solid((0, 0, 255)))
        metrics = client.get("/metrics").text
    assert response.status_code == 504 and response.json()["code"] == "timeout"
    assert 'visiondock_scoring_rejected_total{reason="timeout"} 1.0' in metrics
