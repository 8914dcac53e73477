"""Model-assisted labeling and launched trainings across real service processes: the annotation
service asks the scoring service (serving a tiny colour model) for suggestions over REST; the
registry launches the trainer as a process for a run created with `launch: true`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cli.local_services import LocalServices
from services.annotation.suggestions import suggestion_from_answer
from services.registry.app import create_app as create_registry_app
from services.scoring.app import create_app as create_scoring_app
from services.scoring.settings import ScoringSettings
from tests.scoring import tiny_models
from tests.support.stack import running_services
from visiondock.settings import LOCAL_DEV_API_KEY, Settings

pytestmark = pytest.mark.e2e
AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    root = tmp_path_factory.mktemp("suggest")
    model = tiny_models.classifier(root / "colours.onnx", model_name="colours", model_version="4")
    with running_services(root / "home", env={"VISIONDOCK_SCORING_MODEL_PATH": str(model),
                                              "VISIONDOCK_TRAINING_LAUNCHER": "local"}) as local:
        yield local


@pytest.fixture(scope="module")
def annotation(stack: LocalServices) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("annotation"), headers=AUTH, timeout=60) as client:
        yield client


def _upload(client: httpx.Client, project: str, name: str, colour: tuple[int, int, int], **form: str) -> str:
    response = client.post(f"/v1/projects/{project}/images",
                           files=[("files", (name, tiny_models.solid(colour)))], data=form)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["image"]["id"]


def test_suggestions_label_nothing_until_a_person_accepts_them(annotation: httpx.Client) -> None:
    annotation.post("/v1/projects", json={"id": "paints", "type": "multiclass", "tags": ["red", "green", "blue"]})
    red, green, blue = (_upload(annotation, "paints", f"{n}.jpg", c) for n, c in
                        (("red", RED), ("green", GREEN), ("blue", BLUE)))
    labeled = _upload(annotation, "paints", "done.jpg", (200, 40, 40), tags="blue")  # a person said blue

    # The project's own model would be `paints`; this service serves one model, `colours`.
    not_served = annotation.post("/v1/projects/paints/suggest", json={})
    assert not_served.status_code == 404 and "does not serve model 'paints'" in not_served.json()["detail"]
    answer = annotation.post("/v1/projects/paints/suggest", json={"model": "colours"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["suggested"], body["failed"]) == ("colours", 4, 3, [])
    images = {i["id"]: i for i in annotation.get("/v1/projects/paints/images").json()["data"]}
    for image_id, colour in ((red, "red"), (green, "green"), (blue, "blue")):
        image = images[image_id]
        assert (image["labeled"], image["tags"]) == (False, [])  # still unlabeled
        suggestion = image["suggestion"]
        assert (suggestion["model"], suggestion["version"], suggestion["tags"]) == ("colours", 4, [colour])
        assert suggestion["scores"][0]["label"] == colour and suggestion["scores"][0]["probability"] > 0.9
    assert images[labeled]["suggestion"] is None and images[labeled]["tags"] == ["blue"]
    awaiting = annotation.get("/v1/projects/paints/suggestions").json()["data"]
    assert {i["id"] for i in awaiting} == {red, green, blue}

    accepted = annotation.post(f"/v1/projects/paints/images/{red}/suggestion/accept").json()
    assert (accepted["labeled"], accepted["tags"], accepted["suggestion"]) == (True, ["red"], None)
    history = annotation.get(f"/v1/projects/paints/images/{red}/history").json()["data"]
    assert (history[0]["source"], history[0]["labels"]["tags"]) == ("suggestion", ["red"])

    dismissed = annotation.delete(f"/v1/projects/paints/images/{green}/suggestion").json()
    assert (dismissed["labeled"], dismissed["suggestion"]) == (False, None)
    corrected = annotation.put(f"/v1/projects/paints/images/{blue}/tags", json={"tags": ["green"]}).json()
    assert (corrected["tags"], corrected["suggestion"]) == (["green"], None)  # a person's labels resolve it
    assert annotation.get("/v1/projects/paints/suggestions").json()["data"] == []

    again = annotation.post(f"/v1/projects/paints/images/{red}/suggestion/accept")
    assert again.status_code == 409 and "no suggestion" in again.json()["detail"]

    chosen = annotation.post("/v1/projects/paints/suggest", json={"image_ids": [labeled], "model": "colours"}).json()
    assert [r["tags"] for r in chosen["results"]] == [["red"]]
    kept = annotation.get(f"/v1/projects/paints/images/{labeled}").json()
    assert (kept["tags"], kept["suggestion"]["tags"]) == (["blue"], ["red"])  # the person's label stays


def test_suggestions_drop_labels_the_project_lacks_and_bad_requests_get_clear_4xx(annotation: httpx.Client) -> None:
    annotation.post("/v1/projects", json={"id": "reds", "type": "multiclass", "tags": ["red"]})
    green = _upload(annotation, "reds", "green.jpg", GREEN)
    body = annotation.post("/v1/projects/reds/suggest", json={"model": "colours"}).json()
    assert body["results"] == [{"image_id": green, "tags": [], "regions": []}]
    refused = annotation.post(f"/v1/projects/reds/images/{green}/suggestion/accept")
    assert refused.status_code == 400 and "label the image by hand" in refused.json()["detail"]

    no_alias = annotation.post("/v1/projects/reds/suggest", json={"alias": "staging", "model": "colours"})
    assert no_alias.status_code == 404 and "scoring service" in no_alias.json()["detail"]
    unknown = annotation.post("/v1/projects/reds/suggest", json={"image_ids": ["0" * 64], "model": "colours"})
    assert unknown.status_code == 404
    bad = annotation.post("/v1/projects/reds/suggest", json={"limit": 0})
    assert bad.status_code == 422
    assert annotation.post("/v1/projects/nope/suggest", json={}).status_code == 404
    # A classifier cannot suggest boxes: refused before anything is stored.
    annotation.post("/v1/projects", json={"id": "crates", "type": "detection", "tags": ["red"]})
    crate = _upload(annotation, "crates", "crate.jpg", RED)
    mismatch = annotation.post("/v1/projects/crates/suggest", json={"model": "colours"})
    assert mismatch.status_code == 409 and mismatch.json()["code"] == "model_task_mismatch", mismatch.text
    assert "multiclass model" in mismatch.json()["detail"]
    assert annotation.get(f"/v1/projects/crates/images/{crate}").json()["suggestion"] is None


def test_a_detector_answer_becomes_scored_boxes_of_project_tags(tmp_path: Path) -> None:
    model = tiny_models.detector(tmp_path / "det.onnx")
    settings = ScoringSettings(home=tmp_path, scoring_model_path=model, log_format="text", log_level="WARNING")
    with TestClient(create_scoring_app(settings), headers=AUTH) as scoring:
        answer = scoring.post("/v1/predict", files={"file": ("q.png", tiny_models.quadrants(RED, BLUE))}).json()
    suggestion = suggestion_from_answer("detection", answer, {"red", "green"})  # the project has no `blue`
    assert suggestion["tags"] == ["red"]
    [box] = suggestion["regions"]
    assert box["tag"] == "red" and box["score"] > 0.5
    assert (box["left"], box["top"], box["width"], box["height"]) == pytest.approx((0, 0, 0.5, 0.5), abs=0.05)


def _wait_finished(registry: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = registry.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.5)


def test_a_launched_run_fails_with_the_trainers_reason(stack: LocalServices) -> None:
    with httpx.Client(base_url=stack.url("registry"), headers=AUTH, timeout=30) as registry:
        created = registry.post("/v1/runs", json={"model": "no-such-project", "launch": {"on": "local"}})
        assert created.status_code == 201, created.text
        assert created.json()["project_id"] == "no-such-project"
        run = _wait_finished(registry, created.json()["id"])
        assert run["status"] == "failed" and "no-such-project" in run["error"]

        # The trainer presented its run's own key, never the services' key (the access log names the key).
        lines = [json.loads(line) for line in (stack.log_dir / "annotation.log").read_text().splitlines()
                 if line.startswith("{") and "no-such-project" in line]
        callers = {line["key"] for line in lines if line.get("path") == "/v1/projects/no-such-project"}
        assert callers == {created.json()["id"]}, lines

        # Refused by the trainer's own argument check before it could report: the launcher says why.
        bad = registry.post("/v1/runs", json={"model": "paints", "launch": {"on": "local"},
                                              "params": {"fine_tune_stages": 2}})
        run = _wait_finished(registry, bad.json()["id"])
        assert run["status"] == "failed"
        assert "exited with code 2" in run["error"] and "--fine-tune-stages" in run["error"]


def test_a_runs_params_cannot_reach_the_trainers_other_flags(stack: LocalServices) -> None:
    # Abbreviations of the trainer's own flags, identity options and values outside an option's choices are
    # refused before any run or process exists: the trainer is never pointed at another registry, project or
    # cache directory by whoever creates a run.
    with httpx.Client(base_url=stack.url("registry"), headers=AUTH, timeout=30) as registry:
        before = len(registry.get("/v1/runs").json()["data"])
        for params in ({"registry_ur": "http://127.0.0.1:9"}, {"annotation_ur": "http://127.0.0.1:9"},
                       {"cache": str(stack.home)}, {"proj": "secret"}, {"run": "run-0123456789abcdef"},
                       {"registry_url": "http://127.0.0.1:9"}, {"mode": "fastest"}):
            refused = registry.post("/v1/runs", json={"model": "paints", "launch": {"on": "local"}, "params": params})
            assert refused.status_code == 422, (params, refused.text)
        assert len(registry.get("/v1/runs").json()["data"]) == before


def test_a_registry_without_a_launcher_refuses_to_launch(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, training_launcher="none", log_format="text", log_level="WARNING")
    with TestClient(create_registry_app(settings), headers=AUTH) as registry:
        refused = registry.post("/v1/runs", json={"model": "paints", "launch": {"on": "local"}})
        assert refused.status_code == 409 and refused.json()["code"] == "launch_unavailable"
        assert "VISIONDOCK_TRAINING_LAUNCHER" in refused.json()["detail"]
        assert registry.post("/v1/runs", json={"model": "paints"}).json()["status"] == "queued"
