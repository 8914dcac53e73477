"""Readiness as a first install needs it (the registry a real process, scoring in process):
ready when every model that exists for the targets is loaded; a missing alias answers 503
naming it, does not hold readiness back and is served once it appears; a model that exists
but cannot load keeps the service unready; a GPU required but not obtained keeps it unready;
the model cache stays pruned as versions come and go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cli.local_services import LocalServices
from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings
from visiondock.clients import RegistryClient
from visiondock.settings import LOCAL_DEV_API_KEY

from . import tiny_models
from .conftest import AUTH, register
from .test_lifecycle import wait_for
from .tiny_models import solid

RED = (255, 0, 0)
Scoring = Callable[..., Any]  # scoring(**settings) -> context manager of a TestClient


@pytest.fixture
def scoring(tmp_path: Path) -> Scoring:
    @contextmanager
    def running(**overrides: Any) -> Iterator[TestClient]:
        settings = ScoringSettings(home=tmp_path / "scoring", log_format="text", log_level="WARNING",
                                   scoring_poll_seconds=0.2, **overrides)
        with TestClient(create_app(settings), headers=AUTH) as client:
            yield client

    return running


@pytest.fixture
def registry(services: LocalServices) -> Iterator[RegistryClient]:
    with RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as client:
        yield client


def served(client: TestClient) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get("/v1/models").json()["models"]}


def test_a_first_install_is_ready_before_its_model_exists_and_serves_it_once_promoted(
        scoring: Scoring, services: LocalServices, registry: RegistryClient, tmp_path: Path) -> None:
    with scoring(registry_url=services.url("registry"), scoring_model="ready-late",
                 scoring_secondary_alias="staging") as client:
        assert client.get("/readyz").status_code == 200 and client.get("/v2/health/ready").status_code == 200
        refused = client.post("/v1/predict", content=solid(RED))
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert "no alias 'production' of model 'ready-late'" in refused.json()["detail"]
        assert (served(client)["ready-late"]["state"], served(client)["ready-late"]["ready"]) == ("missing", False)
        not_yet = client.get("/v2/models/ready-late/ready")
        assert not_yet.status_code == 503 and not_yet.json()["ready"] is False

        version = register(registry, "ready-late", tiny_models.classifier(tmp_path / "late.onnx"),
                           alias="production")
        answer = wait_for(lambda: (r := client.post("/v1/predict", content=solid(RED))).status_code == 200 and r,
                          "the model to be served at the next poll")
        assert (answer.json()["version"], answer.json()["label"]) == (version, "red")
        assert served(client)["ready-late"]["ready"] is True
        assert client.get("/v2/models/ready-late/ready").json()["ready"] is True
        # The second alias still does not exist; it answers 503 naming it and holds nothing back.
        staged = client.post("/v1/aliases/staging/predict", content=solid(RED))
        assert staged.status_code == 503 and "no alias 'staging'" in staged.json()["detail"]
        assert client.get("/readyz").status_code == 200


def test_a_model_that_exists_but_cannot_load_keeps_a_new_service_unready(
        scoring: Scoring, services: LocalServices, registry: RegistryClient, tmp_path: Path) -> None:
    register(registry, "ready-broken", tiny_models.not_a_model(tmp_path / "broken.onnx"), alias="production")
    with scoring(registry_url=services.url("registry"), scoring_model="ready-broken") as client:
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert "ready-broken@production: ModelLoadError" in readiness.json()["not_ready_because"][0]
        assert served(client)["ready-broken"]["state"] == "failed"


def test_a_gpu_required_but_not_obtained_keeps_the_service_unready(
        scoring: Scoring, models: dict[str, Path], capfd: pytest.CaptureFixture[str]) -> None:
    # ONNX Runtime's CPU build here: no session can get CUDA.
    with scoring(scoring_model_path=models["multiclass"], scoring_require_gpu=True) as client:
        readiness = client.get("/readyz")
        answer = client.post("/v1/predict", content=solid(RED))  # the service itself still answers
        v2 = client.get("/v2/models/colours/ready")
        health = client.get("/v2/health/ready")
    assert readiness.status_code == 503 and health.status_code == 503
    assert "VISIONDOCK_SCORING_REQUIRE_GPU" in readiness.json()["not_ready_because"][0]
    assert readiness.json()["model"]["provider"] == "CPUExecutionProvider"
    assert v2.status_code == 503 and v2.json()["ready"] is False
    assert answer.status_code == 200
    # The operator's log says why.
    [line] = [line for line in capfd.readouterr().err.splitlines() if "VISIONDOCK_SCORING_REQUIRE_GPU" in line]
    assert " ERROR " in line and "runs on CPUExecutionProvider" in line and line.endswith("not ready")


def test_the_model_cache_keeps_what_is_served_and_the_last_few_files(
        scoring: Scoring, services: LocalServices, registry: RegistryClient, tmp_path: Path) -> None:
    with scoring(registry_url=services.url("registry"), scoring_model="ready-pruned", scoring_cache_keep_files=1,
                 scoring_variant="fp32") as client:
        for gain in (8, 9, 10, 11, 12):
            version = register(registry, "ready-pruned",
                               tiny_models.classifier(tmp_path / f"v{gain}.onnx", gain=gain), alias="production")
            wait_for(lambda v=version: client.post("/v1/predict", content=solid(RED)).json().get("version") == v,
                     f"version {version}")
    cached = sorted((tmp_path / "scoring" / "model-cache" / "ready-pruned").glob("*.onnx"))
    assert [p.name.split("-")[0] for p in cached] == [str(version - 1), str(version)]
