"""One scoring process serving many models (VISIONDOCK_SCORING_MODELS): routes per model, 404s
naming the served models, the least-recently-used memory budget, discovery of every model with
a `production` alias, and `visiondock predict --model`.

The registry is a real process with real model versions; the scoring apps run in-process
(TestClient), except the stack's own scoring process, which `visiondock up` would start."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cli.local_services import SERVE_EVERY_PRODUCTION_MODEL, LocalServices
from cli.main import main as visiondock
from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings
from services.scoring.targets import ServedTarget, parse_model_list
from tests.support.stack import running_services
from visiondock.clients import RegistryClient
from visiondock.settings import LOCAL_DEV_API_KEY

from . import tiny_models
from .conftest import AUTH
from .test_lifecycle import wait_for
from .tiny_models import solid

RED, BLUE = (255, 0, 0), (0, 0, 255)
ModelsApp = Callable[..., TestClient]  # serve_models("flowers,shelf@staging", **settings)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """The services as `visiondock up` starts them without --model: scoring serves every production model."""
    with running_services(tmp_path_factory.mktemp("many-models"),
                          env={"VISIONDOCK_SCORING_POLL_SECONDS": "0.2",
                               "VISIONDOCK_SCORING_MODELS": SERVE_EVERY_PRODUCTION_MODEL}) as services:
        yield services


@pytest.fixture(scope="module")
def registry(stack: LocalServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryClient]:
    """flowers (production), shelf (a detector: production and staging), tags (version 1, no alias)."""
    root = tmp_path_factory.mktemp("many-models-files")
    with RegistryClient(stack.url("registry"), LOCAL_DEV_API_KEY) as client:
        files = {"flowers": (tiny_models.classifier(root / "flowers.onnx"), "multiclass"),
                 "shelf": (tiny_models.detector(root / "shelf.onnx"), "detection"),
                 "tags": (tiny_models.classifier(root / "tags.onnx", task="multilabel"), "multilabel")}
        for name, (path, task) in files.items():
            version = client.register_version(name, path, {"task": task, "labels": tiny_models.COLOURS,
                                                           "project_id": name})["version"]
            if name != "tags":
                client.set_alias(name, "production", version)
        client.set_alias("shelf", "staging", 1)
        yield client


@pytest.fixture
def serve_models(stack: LocalServices, registry: RegistryClient, tmp_path: Path) -> ModelsApp:
    def running(models: str, **overrides: Any) -> TestClient:
        settings = ScoringSettings(home=tmp_path, registry_url=stack.url("registry"), scoring_models=models,
                                   log_format="text", log_level="WARNING", **overrides)
        return TestClient(create_app(settings), headers=AUTH)

    return running


def served(client: TestClient) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get("/v1/models").json()["models"]}


def test_the_models_list_format() -> None:
    assert parse_model_list(" flowers, shelf@staging,faces:3,*@production ", default_alias="production") == (
        [ServedTarget("flowers", "production"), ServedTarget("shelf", "staging"), ServedTarget("faces", version=3)],
        ["production"])
    for wrong, says in [("flowers@", "is not NAME"), ("a,a@staging", "twice"), ("*:2", "takes an alias"),
                        ("x:0", "start at 1"), ("../etc", "is not NAME")]:
        with pytest.raises(ValueError, match=says):
            parse_model_list(wrong, default_alias="production")
    with pytest.raises(ValueError, match="first model"):
        ScoringSettings(scoring_model="shelf", scoring_models="flowers,shelf")


@pytest.mark.e2e
def test_each_model_at_its_own_routes(serve_models: ModelsApp) -> None:
    with serve_models("flowers,shelf@staging,tags:1") as client:
        flowers = client.post("/v1/models/flowers/predict", content=solid(RED)).json()
        assert (flowers["model"], flowers["alias"], flowers["label"]) == ("flowers", "production", "red")
        shelf = client.post("/v1/models/shelf/predict", content=tiny_models.quadrants(RED, BLUE)).json()
        assert (shelf["model"], shelf["alias"], shelf["task"]) == ("shelf", "staging", "detection")
        assert sorted(box["label"] for box in shelf["detections"]) == ["blue", "red"]
        tags = client.post("/v1/models/tags/predict/batch", files=[("files", ("a.jpg", solid(BLUE)))]).json()
        assert tags["results"][0]["answer"]["alias"] == "v1" and tags["results"][0]["answer"]["model"] == "tags"
        rendered = client.post("/v1/models/shelf/render?format=png", content=tiny_models.quadrants(RED, BLUE))
        assert rendered.headers["content-type"] == "image/png" and rendered.headers["x-model"] == "shelf"
        skill = client.post("/v1/models/shelf/skills/detect", json={"values": [
            {"recordId": "1", "data": {"image": {"data": base64.b64encode(solid(RED)).decode()}}}]}).json()
        assert skill["values"][0]["data"]["model"] == "shelf"
        # The single-model routes serve the first model, as before.
        assert client.post("/v1/predict", content=solid(BLUE)).json()["model"] == "flowers"
        assert client.get("/v1/model").json()["serving"] == "flowers@production"

        listing = client.get("/v1/models").json()
        assert listing["primary"] == "flowers" and listing["loaded"] == 3
        assert [(m["name"], m["serving"], m["state"]) for m in listing["models"]] == [
            ("flowers", "flowers@production", "loaded"), ("shelf", "shelf@staging", "loaded"),
            ("tags", "tags@1", "loaded")]

        unknown = client.post("/v1/models/faces/predict", content=solid(RED))
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "model_not_served"
        assert "'faces'" in unknown.json()["detail"] and "flowers, shelf, tags" in unknown.json()["detail"]

        metadata = client.get("/v2/models/shelf").json()
        assert metadata["name"] == "shelf" and [o["name"] for o in metadata["outputs"]] == ["boxes", "scores"]
        assert client.get("/v2/models/tags/ready").json()["ready"] is True
        tensor = [0.0] * (3 * tiny_models.SIZE * tiny_models.SIZE)
        infer = client.post("/v2/models/tags/infer", json={"inputs": [
            {"name": "image", "shape": [1, 3, tiny_models.SIZE, tiny_models.SIZE], "datatype": "FP32",
             "data": tensor}]})
        assert infer.status_code == 200 and infer.json()["model_name"] == "tags"
        missing = client.get("/v2/models/faces")
        assert missing.status_code == 404 and "flowers, shelf, tags" in missing.json()["error"]


@pytest.mark.e2e
def test_the_memory_budget_unloads_the_least_recently_used(serve_models: ModelsApp) -> None:
    with serve_models("flowers,shelf,tags:1", scoring_max_loaded_models=2) as client:
        # Loaded in order while the budget allows; the rest wait for a request.
        assert {n: m["state"] for n, m in served(client).items()} == {
            "flowers": "loaded", "shelf": "loaded", "tags": "unloaded"}
        status = client.get("/v2/models/tags/ready")  # a request loads it, unloading the least recently used
        assert status.status_code == 200
        assert {n: m["state"] for n, m in served(client).items()} == {
            "flowers": "loaded", "shelf": "unloaded", "tags": "loaded"}
        # The primary model is never unloaded, however long unused: shelf comes back, tags goes, and
        # shelf's file comes from the disk cache, verified by its SHA-256: not downloaded again.
        cache = client.app.state.scoring.settings.resolved_cache_dir / "shelf"
        [cached] = cache.glob("*.onnx")
        written = cached.stat().st_mtime_ns
        answer = client.post("/v1/models/shelf/predict", content=tiny_models.quadrants(RED, BLUE))
        assert answer.status_code == 200 and answer.json()["model"] == "shelf"
        listing = client.get("/v1/models").json()
        assert listing["loaded"] == 2 and listing["max_loaded_models"] == 2
        assert {m["name"]: m["state"] for m in listing["models"]}["tags"] == "unloaded"
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        assert "visiondock_scoring_model_unloads_total 2.0" in metrics
        assert cached.stat().st_mtime_ns == written and len(list(cache.glob("*.onnx"))) == 1


@pytest.mark.e2e
def test_nothing_to_discover_yet_is_ready_and_says_why(serve_models: ModelsApp) -> None:
    # No model exists for the target yet: nothing to wait for, so a fresh install's `--wait` can finish.
    with serve_models("*@canary") as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/models").json()["models"] == []
        answer = client.post("/v1/predict", content=solid(RED))
        assert answer.status_code == 503 and "no registry model has the alias canary" in answer.json()["detail"]
        assert client.post("/v1/models/flowers/predict", content=solid(RED)).status_code == 404


@pytest.mark.e2e
def test_every_production_model_is_discovered(serve_models: ModelsApp, registry: RegistryClient,
                                              tmp_path: Path) -> None:
    with serve_models("*@production") as client:
        assert sorted(served(client)) == ["flowers", "shelf"]
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/models/shelf/predict", content=solid(RED)).status_code == 200
        assert client.post("/v1/predict", content=solid(RED)).json()["model"] == "flowers"  # the first found
        version = registry.register_version("late", tiny_models.classifier(tmp_path / "late.onnx"),
                                            {"task": "multiclass", "labels": tiny_models.COLOURS})["version"]
        assert client.post("/v1/models/late/predict", content=solid(RED)).status_code == 404
        registry.set_alias("late", "production", version)
        client.post("/v1/model/refresh")  # what the poll does on its own
        assert client.post("/v1/models/late/predict", content=solid(RED)).json()["model"] == "late"


@pytest.mark.e2e
def test_up_scores_every_production_model_and_predict_takes_a_model(
        stack: LocalServices, registry: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = stack.url("scoring")
    wait_for(lambda: {"flowers", "shelf"} <= {m["name"] for m in httpx.get(f"{url}/v1/models", headers=AUTH)
                                               .json()["models"]}, "both production models")
    image = tmp_path / "red.jpg"
    image.write_bytes(solid(RED))
    code = visiondock(["--scoring-url", url, "--api-key", LOCAL_DEV_API_KEY, "predict", "--model", "shelf",
                       str(image)])
    answer = json.loads(capsys.readouterr().out.strip())
    assert code == 0 and answer["model"] == "shelf" and answer["task"] == "detection"
    code = visiondock(["--scoring-url", url, "--api-key", LOCAL_DEV_API_KEY, "predict", "--model", "nope",
                       str(image)])
    assert code != 0 and "shelf" in json.loads(capsys.readouterr().out.strip())["error"]
