"""The annotation service's review queue of captured predictions, over its HTTP API:
hand-over (idempotent), most uncertain first, accept → labeled image, reject, and
refusals with clear 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.annotation.app import create_app
from visiondock.settings import LOCAL_DEV_API_KEY, Settings

from .tiny_models import quadrants, solid

AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}


@pytest.fixture
def annotation(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(create_app(settings), headers=AUTH) as client:
        for project, kind in (("colours", "multiclass"), ("palette", "multilabel"), ("shelf", "detection")):
            client.post("/v1/projects", json={"id": project, "type": kind, "tags": ["red", "green", "blue"]})
        yield client


def capture(label: str | None, probability: float, **prediction: Any) -> dict[str, Any]:
    return {"model": "colours", "version": 3, "alias": "production", "task": "multiclass",
            "uncertainty": round(1 - probability, 6), "captured_at": "2025-01-01T00:00:00+00:00",
            "prediction": {"label": label, "probability": probability, "uncertain": probability < 0.6,
                           **prediction}}


def hand_over(client: TestClient, project: str, item_id: str, image: bytes, body: dict[str, Any]) -> Any:
    return client.put(f"/v1/projects/{project}/review-items/{item_id}",
                      files={"image": (f"{item_id}.jpg", image, "image/jpeg")},
                      data={"capture": json.dumps(body)})


def test_queue_lists_most_uncertain_first_and_hand_over_is_idempotent(annotation: TestClient) -> None:
    for item_id, colour, probability in (("a", (255, 0, 0), 0.97), ("b", (120, 120, 120), 0.34),
                                         ("c", (0, 0, 255), 0.71)):
        created = hand_over(annotation, "colours", item_id, solid(colour), capture("red", probability))
        assert created.status_code == 201, created.text
    again = hand_over(annotation, "colours", "b", solid((120, 120, 120)), capture("red", 0.34))
    assert again.status_code == 200 and again.json()["id"] == "b"
    page = annotation.get("/v1/projects/colours/review-items").json()
    assert [item["id"] for item in page["data"]] == ["b", "c", "a"]
    first = page["data"][0]
    assert first["status"] == "pending" and first["model"] == "colours" and first["version"] == 3
    assert first["suggested"] == {"tags": ["red"], "regions": []}
    content = annotation.get("/v1/projects/colours/review-items/b/content")
    assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
    paged = annotation.get("/v1/projects/colours/review-items", params={"limit": 2}).json()
    assert len(paged["data"]) == 2 and paged["continuation"]


def test_accept_makes_a_labeled_image_and_reject_marks_rejected(annotation: TestClient) -> None:
    hand_over(annotation, "colours", "sure", solid((255, 0, 0)), capture("red", 0.95))
    hand_over(annotation, "colours", "unsure", solid((0, 0, 250)), capture("red", 0.4))
    hand_over(annotation, "colours", "junk", solid((10, 10, 10)), capture("green", 0.5))

    as_predicted = annotation.post("/v1/projects/colours/review-items/sure/accept")
    corrected = annotation.post("/v1/projects/colours/review-items/unsure/accept", json={"tags": ["blue"]})
    rejected = annotation.post("/v1/projects/colours/review-items/junk/reject", json={"reason": "blurry"})
    assert as_predicted.status_code == 200, as_predicted.text
    assert as_predicted.json()["image"]["tags"] == ["red"] and as_predicted.json()["image"]["labeled"] is True
    assert as_predicted.json()["item"]["labels_from"] == "prediction"
    assert corrected.json()["image"]["tags"] == ["blue"] and corrected.json()["item"]["labels_from"] == "reviewer"
    assert rejected.json()["status"] == "rejected" and rejected.json()["reason"] == "blurry"

    images = annotation.get("/v1/projects/colours/images", params={"labeled": "true"}).json()["data"]
    assert sorted(image["tags"][0] for image in images) == ["blue", "red"]
    assert annotation.get("/v1/projects/colours/review-items").json()["data"] == []
    everything = annotation.get("/v1/projects/colours/review-items", params={"status": "all"}).json()["data"]
    assert {item["id"]: item["status"] for item in everything} == {"sure": "accepted", "unsure": "accepted",
                                                                   "junk": "rejected"}
    twice = annotation.post("/v1/projects/colours/review-items/sure/reject")
    assert twice.status_code == 409 and "already accepted" in twice.json()["detail"]


def test_accept_takes_tags_and_boxes_for_multilabel_and_detection(annotation: TestClient) -> None:
    hand_over(annotation, "palette", "p1", solid((255, 255, 0)),
              {**capture(None, 0.9), "task": "multilabel",
               "prediction": {"tags": [{"label": "red", "probability": 0.9}, {"label": "green", "probability": 0.8}]}})
    detections = [{"label": "red", "score": 0.9, "box": {"x1": 0, "y1": 0, "x2": 100, "y2": 50},
                   "region": {"left": 0.0, "top": 0.0, "width": 0.5, "height": 0.5}},
                  {"label": "blue", "score": 0.8, "box": {"x1": 100, "y1": 50, "x2": 200, "y2": 100},
                   "region": {"left": 0.5, "top": 0.5, "width": 0.5000001, "height": 0.5}}]
    hand_over(annotation, "shelf", "d1", quadrants((255, 0, 0), (0, 0, 255)),
              {**capture("red", 0.9), "task": "detection", "prediction": {"detections": detections}})

    tags = annotation.post("/v1/projects/palette/review-items/p1/accept").json()
    boxes = annotation.post("/v1/projects/shelf/review-items/d1/accept").json()
    assert sorted(tags["image"]["tags"]) == ["green", "red"]
    regions = {r["tag"]: r for r in boxes["image"]["regions"]}
    assert set(regions) == {"red", "blue"}
    assert regions["blue"]["left"] == pytest.approx(0.5) and regions["blue"]["width"] == pytest.approx(0.5)


def test_refusals_are_clear(annotation: TestClient) -> None:
    good = capture("red", 0.9)
    assert hand_over(annotation, "nowhere", "x", solid((1, 2, 3)), good).status_code == 404
    not_image = hand_over(annotation, "colours", "x", b"text", good)
    assert not_image.status_code == 415 and "not an image" in not_image.json()["detail"]
    bad_capture = hand_over(annotation, "colours", "x", solid((1, 2, 3)), {"model": "m"})
    assert bad_capture.status_code == 422 and "uncertainty" in bad_capture.json()["detail"]
    bad_id = hand_over(annotation, "colours", "bad.id", solid((1, 2, 3)), good)
    assert bad_id.status_code == 422 and "item_id" in bad_id.json()["detail"]  # checked at the edge
    assert annotation.get("/v1/projects/colours/review-items", params={"status": "all"}).json()["data"] == []

    hand_over(annotation, "colours", "unknown-face", solid((5, 5, 5)), capture("unknown", 0.3))
    no_label = annotation.post("/v1/projects/colours/review-items/unknown-face/accept")
    assert no_label.status_code == 400 and "exactly one tag" in no_label.json()["detail"]
    unknown_tag = annotation.post("/v1/projects/colours/review-items/unknown-face/accept", json={"tags": ["cyan"]})
    assert unknown_tag.status_code == 400 and "cyan" in unknown_tag.json()["detail"]
    stale = annotation.post("/v1/projects/colours/review-items/unknown-face/reject", headers={"If-Match": "old"})
    assert stale.status_code == 412
    assert annotation.get("/v1/projects/colours/review-items/nothing").status_code == 404
