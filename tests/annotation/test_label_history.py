"""Label history on both document backends: every change of an image's labels, with who, when,
the labels before and after, and the source (upload, person, review, suggestion)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.annotation.app import create_app
from tests.support.keys import AZURE_KEY_SETTINGS, AZURE_TEST_KEY, KEY_NAMES
from visiondock.settings import Settings

from .conftest import AUTH, jpeg


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.azure)])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    overrides: dict[str, object] = {}
    if request.param == "cosmos":
        server = request.getfixturevalue("cosmosdb_server")
        overrides = {"document_backend": "cosmos", "cosmos_endpoint": server.endpoint, "cosmos_key": server.key,
                     "cosmos_database": request.getfixturevalue("cosmos_database"),
                     "cosmos_endpoint_discovery": False, **AZURE_KEY_SETTINGS}
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING", **overrides)
    headers = {"X-API-Key": AZURE_TEST_KEY} if settings.uses_azure else AUTH
    with TestClient(create_app(settings), headers=headers) as test_client:
        yield test_client


def _upload(client: TestClient, project: str, data: bytes, **form: str) -> dict:
    response = client.post(f"/v1/projects/{project}/images", files=[("files", ("a.jpg", data))], data=form)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["image"]


def _history(client: TestClient, project: str, image_id: str, **params: object) -> dict:
    response = client.get(f"/v1/projects/{project}/images/{image_id}/history", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_tag_change_records_who_when_before_after_and_source(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "flowers", "type": "multiclass", "tags": ["rose", "tulip"]})
    image = _upload(client, "flowers", jpeg(), tags="rose")
    client.put(f"/v1/projects/flowers/images/{image['id']}/tags", json={"tags": ["tulip"]})
    client.put(f"/v1/projects/flowers/images/{image['id']}/tags", json={"tags": []})

    entries = _history(client, "flowers", image["id"])["data"]
    assert [(e["source"], e["previous"] and e["previous"]["tags"], e["labels"]["tags"], e["labels"]["labeled"])
            for e in entries] == [("person", ["tulip"], [], False), ("person", ["rose"], ["tulip"], True),
                                  ("upload", None, ["rose"], True)]
    # The name of the key that made each change.
    assert {e["who"] for e in entries} == {KEY_NAMES[client.headers["x-api-key"]]}
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)

    first = _history(client, "flowers", image["id"], limit=2)
    rest = _history(client, "flowers", image["id"], limit=2, continuation=first["continuation"])
    assert [e["id"] for e in first["data"] + rest["data"]] == [e["id"] for e in entries]
    assert rest["continuation"] is None


def test_box_changes_and_a_review_acceptance_are_recorded(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "shelf", "type": "detection", "tags": ["can"]})
    image = _upload(client, "shelf", jpeg((10, 200, 10)))
    box = {"tag": "can", "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}
    client.put(f"/v1/projects/shelf/images/{image['id']}/regions", json={"regions": [box]})
    [entry] = _history(client, "shelf", image["id"])["data"]
    assert entry["previous"] == {"tags": [], "regions": [], "labeled": False}
    assert entry["labels"] == {"tags": ["can"], "regions": [box], "labeled": True}

    capture = {"model": "shelf", "version": 1, "task": "detection", "uncertainty": 0.4,
               "prediction": {"detections": [{"label": "can", "score": 0.6, "region": box}]}}
    submitted = client.put("/v1/projects/shelf/review-items/cap-1", files={"image": ("c.jpg", jpeg((9, 9, 200)))},
                           data={"capture": json.dumps(capture)})
    assert submitted.status_code == 201, submitted.text
    accepted = client.post("/v1/projects/shelf/review-items/cap-1/accept").json()
    [reviewed] = _history(client, "shelf", accepted["image"]["id"])["data"]
    assert (reviewed["source"], reviewed["labels"]["regions"]) == ("review", [box])


def test_history_of_an_unknown_image_is_a_clear_404(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "flowers", "type": "multiclass", "tags": ["rose"]})
    response = client.get(f"/v1/projects/flowers/images/{'0' * 64}/history")
    assert response.status_code == 404
    assert "does not exist" in response.json()["detail"]


def test_bulk_changes_tag_renames_and_imports_record_who_made_them(client: TestClient) -> None:
    who = KEY_NAMES[client.headers["x-api-key"]]
    client.post("/v1/projects", json={"id": "fruit", "type": "multiclass", "tags": ["apple", "pear"]})
    image = _upload(client, "fruit", jpeg())
    bulk = client.post("/v1/projects/fruit/images/bulk/tags", json={"image_ids": [image["id"]], "add": ["apple"]})
    assert bulk.json()["updated"] == 1
    client.post("/v1/projects/fruit/tags/apple/rename", json={"name": "pomme"})
    manifest = {"format": "folder", "classes": ["pear"], "replace_labels": True,
                "samples": [{"path": "pear/b.jpg", "tags": ["pear"], "labeled": True}]}
    imported = client.post("/v1/projects/fruit/imports/samples", data={"manifest": json.dumps(manifest)},
                           files=[("files", ("b.jpg", jpeg((10, 200, 10))))])
    assert imported.json()["labeled"] == 1, imported.text
    other = client.get("/v1/projects/fruit/images", params={"tag": "pear"}).json()["data"][0]["id"]
    entries = [(e["source"], e["who"], e["labels"]["tags"]) for e in _history(client, "fruit", image["id"])["data"]]
    assert entries == [("bulk", who, ["pomme"]), ("bulk", who, ["apple"])]
    assert [(e["source"], e["who"]) for e in _history(client, "fruit", other)["data"]] == [("import", who)]


def test_deleting_a_project_deletes_its_label_history(client: TestClient) -> None:
    client.post("/v1/projects", json={"id": "fruit", "type": "multiclass", "tags": ["apple", "pear"]})
    image = _upload(client, "fruit", jpeg(), tags="apple")
    client.put(f"/v1/projects/fruit/images/{image['id']}/tags", json={"tags": ["pear"]})
    assert client.delete("/v1/projects/fruit", params={"confirm": "true"}).status_code == 200
    # A new project of the same name, the same photo: its history starts afresh.
    client.post("/v1/projects", json={"id": "fruit", "type": "multiclass", "tags": ["apple"]})
    again = _upload(client, "fruit", jpeg())
    assert again["id"] == image["id"]
    assert _history(client, "fruit", image["id"])["data"] == []
