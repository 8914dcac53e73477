"""Taking a review decision back (POST .../review-items/{id}/reopen) and what the review queue says
about capture (GET .../review-capture), over the annotation service's HTTP API; the scoring service
it asks is a real scoring app in process."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from services.annotation.capture_status import CaptureStatus
from services.scoring.app import create_app as create_scoring_app
from services.scoring.settings import ScoringSettings
from visiondock.settings import LOCAL_DEV_API_KEY

from .conftest import jpeg

BOX = {"tag": "can", "left": 0.1, "top": 0.1, "width": 0.5, "height": 0.5}


def _hand_over(client: TestClient, project: str, item_id: str, colour: tuple[int, int, int],
               prediction: dict[str, Any], task: str) -> None:
    capture = {"model": project, "version": 1, "task": task, "uncertainty": 0.4, "prediction": prediction}
    answer = client.put(f"/v1/projects/{project}/review-items/{item_id}", files={"image": ("c.jpg", jpeg(colour))},
                        data={"capture": json.dumps(capture)})
    assert answer.status_code == 201, answer.text


def test_an_accept_taken_back_leaves_the_image_as_it_was_and_the_item_pending(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "shelf", "type": "detection", "tags": ["can", "box"]})
    _hand_over(client, "shelf", "cap-1", (9, 9, 200), {"detections": [{"label": "can", "score": 0.6, "region": BOX}]},
               "detection")
    corrected = {**BOX, "tag": "box"}
    accepted = client.post("/v1/projects/shelf/review-items/cap-1/accept", json={"regions": [corrected]}).json()
    image_id = accepted["image"]["id"]
    assert client.get(f"/v1/projects/shelf/images/{image_id}").json()["regions"] == [corrected]

    reopened = client.post("/v1/projects/shelf/review-items/cap-1/reopen")
    assert reopened.status_code == 200, reopened.text
    body = reopened.json()
    assert body["item"]["status"] == "pending"
    assert not any(body["item"].get(k) for k in ("image_id", "labels", "labels_from", "reviewed_at"))
    assert (body["image"]["labeled"], body["image"]["regions"]) == (False, [])
    history = client.get(f"/v1/projects/shelf/images/{image_id}/history").json()["data"]
    assert [(e["source"], e["labels"]["labeled"]) for e in history] == [("review", False), ("review", True)]
    # Pending again: it can be decided anew, and a pending item has nothing to take back.
    assert client.post("/v1/projects/shelf/review-items/cap-1/reopen").json()["code"] == "not_decided"
    again = client.post("/v1/projects/shelf/review-items/cap-1/accept").json()
    assert again["image"]["regions"] == [BOX] and again["item"]["labels_from"] == "prediction"


def test_a_rejection_taken_back_and_an_image_relabeled_since_is_left_alone(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "paints", "type": "multiclass", "tags": ["red", "blue"]})
    _hand_over(client, "paints", "cap-r", (200, 9, 9), {"label": "red", "probability": 0.7}, "multiclass")
    _hand_over(client, "paints", "cap-b", (9, 9, 200), {"label": "red", "probability": 0.6}, "multiclass")
    client.post("/v1/projects/paints/review-items/cap-r/reject", json={"reason": "blurred"})
    reopened = client.post("/v1/projects/paints/review-items/cap-r/reopen").json()
    assert (reopened["item"]["status"], reopened["image"]) == ("pending", None) and not reopened["item"].get("reason")

    accepted = client.post("/v1/projects/paints/review-items/cap-b/accept", json={"tags": ["blue"]}).json()
    image_id = accepted["image"]["id"]
    client.put(f"/v1/projects/paints/images/{image_id}/tags", json={"tags": ["red"]})  # a person, later
    refused = client.post("/v1/projects/paints/review-items/cap-b/reopen")
    assert refused.status_code == 409 and refused.json()["code"] == "relabeled_since"
    assert client.get(f"/v1/projects/paints/images/{image_id}").json()["tags"] == ["red"]
    assert client.get("/v1/projects/paints/review-items/cap-b").json()["status"] == "accepted"
    assert client.post("/v1/projects/paints/review-items/nope/reopen").status_code == 404


def _status_from(tmp_path: Path, project: str, **scoring: Any) -> dict[str, Any]:
    settings = ScoringSettings(home=tmp_path, log_format="text", log_level="WARNING", **scoring)
    with TestClient(create_scoring_app(settings), base_url="http://scoring") as app:
        status = CaptureStatus(scoring_url="http://scoring", api_key=LOCAL_DEV_API_KEY, client=lambda: nullcontext(app))
        return status.for_project(project)


def test_the_review_queue_knows_whether_capture_is_on(tmp_path: Path) -> None:
    off = _status_from(tmp_path / "off", "shelf")
    assert (off["scoring_reachable"], off["capture_rate"], off["model_served"]) == (True, 0.0, False)
    assert "VISIONDOCK_SCORING_CAPTURE_RATE" in off["how_to_turn_on"]
    on = _status_from(tmp_path / "on", "shelf", scoring_capture_rate=0.25)
    assert on["capture_rate"] == 0.25
    gone = CaptureStatus(scoring_url="http://127.0.0.1:9", api_key="k", timeout=0.5).for_project("shelf")
    assert (gone["scoring_reachable"], gone["capture_rate"]) == (False, None) and "did not answer" in gone["detail"]


def test_the_app_asks_through_the_annotation_service(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "shelf", "type": "detection", "tags": ["can"]})
    answer = client.get("/v1/projects/shelf/review-capture")
    assert answer.status_code == 200  # the tests' scoring URL answers nothing: said, not failed
    assert answer.json()["scoring_reachable"] is False and answer.json()["capture_rate"] is None
    assert client.get("/v1/projects/nope/review-capture").status_code == 404
    assert client.get("/v1/projects/shelf/review-capture", headers={"X-API-Key": ""}).status_code == 401

