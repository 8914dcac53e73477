"""A key scoped to models may use only the model a scoring request resolves to, on every
route, whether or not `VISIONDOCK_SCORING_MODEL` names it; `GET /v1/models` needs a key
and lists only what it covers; a refused request captures nothing."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cli.local_services import free_port
from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings
from visiondock.auth import new_key
from visiondock.captures import CAPTURES
from visiondock.storage import Query
from visiondock.storage.documents_sqlite import SqliteDocumentStore

from . import tiny_models
from .tiny_models import solid

KEYS = {name: new_key(name, ["predict"], scopes) for name, scopes in
        [("colours-scorer", ["colours"]), ("birds-scorer", ["birds"]), ("any-scorer", ["*"])]}
RED = (255, 0, 0)


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name][0]}


@pytest.fixture
def scoring(tmp_path: Path) -> TestClient:
    """Serving a file whose model card names it `colours`; no VISIONDOCK_SCORING_MODEL (as `visiondock up`
    leaves it), capturing every prediction."""
    model = tiny_models.classifier(tmp_path / "model.onnx", model_name="colours")
    settings = ScoringSettings(home=tmp_path, scoring_model_path=model, api_keys="",
                               api_key_entries="\n".join(entry for _, entry in KEYS.values()),
                               scoring_capture_rate=1.0, scoring_capture_project="colours",
                               annotation_url=f"http://127.0.0.1:{free_port()}", log_format="text",
                               log_level="WARNING")
    return TestClient(create_app(settings))


ROUTES = [
    ("POST", "/v1/predict", {"content": solid(RED)}),
    ("POST", "/v1/predict/batch", {"files": [("files", ("a.jpg", solid(RED)))]}),
    ("POST", "/v1/render", {"content": solid(RED)}),
    ("POST", "/v1/skills/classify", {"json": {"values": [{"recordId": "1", "data": {
        "image": {"data": base64.b64encode(solid(RED)).decode()}}}]}}),
    ("POST", "/v1/aliases/production/predict", {"content": solid(RED)}),
    ("POST", "/v1/models/colours/predict", {"content": solid(RED)}),
    ("GET", "/v1/model", {}),
    ("GET", "/v2/models/colours", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_key_scoped_to_another_model_is_refused(scoring: TestClient, method: str, path: str,
                                                  body: dict) -> None:
    with scoring:
        refused = scoring.request(method, path, headers=key("birds-scorer"), **body)
        allowed = scoring.request(method, path, headers=key("colours-scorer"), **body)
    assert refused.status_code == 403, refused.text
    assert "'birds-scorer' is not allowed to use 'colours'" in refused.json()["detail"]
    assert allowed.status_code == 200, allowed.text


def test_a_refused_request_lands_in_no_review_queue(scoring: TestClient, tmp_path: Path) -> None:
    with scoring:
        assert scoring.post("/v1/predict", content=solid(RED), headers=key("birds-scorer")).status_code == 403
        assert scoring.post("/v1/predict", content=solid(RED), headers=key("colours-scorer")).status_code == 200
    # Stopping the app finished the capture queue: one capture summary, the allowed request's, under its model.
    documents = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    with contextlib.closing(documents):
        assert len(list(documents.query_all(CAPTURES, Query(partition_key="colours")))) == 1


def test_the_list_of_served_models_needs_a_key_and_shows_what_it_covers(scoring: TestClient) -> None:
    with scoring:
        anonymous = scoring.get("/v1/models")
        birds = scoring.get("/v1/models", headers=key("birds-scorer")).json()
        colours = scoring.get("/v1/models", headers=key("colours-scorer")).json()
        everything = scoring.get("/v1/models", headers=key("any-scorer")).json()
    assert anonymous.status_code == 401
    assert (birds["models"], birds["primary"], birds["loaded"]) == ([], None, 0)
    assert [m["name"] for m in colours["models"]] == ["colours"] == [m["name"] for m in everything["models"]]
    assert colours["primary"] == "colours" and colours["models"][0]["ready"] is True
