"""A request reads its project once, however far its labels travel (review queue, image library, label
history, tag checks): counted on the SQLite store the service opens, over HTTP."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

import visiondock.storage.documents_sqlite as sqlite_backend
from services.annotation.app import create_app
from services.annotation.projects import PROJECTS
from tests.annotation.conftest import AUTH, jpeg
from visiondock.settings import Settings
from visiondock.storage import Document

BOX = {"tag": "red", "left": 0.1, "top": 0.1, "width": 0.3, "height": 0.3}


class CountingSqliteStore(sqlite_backend.SqliteDocumentStore):
    """The SQLite document store, counting the documents each collection is read for."""

    reads: ClassVar[Counter[str]] = Counter()  # every instance: the test reads it without the app's store

    def get(self, collection: str, doc_id: str, *, partition_key: str) -> Document:
        self.reads[collection] += 1
        return super().get(collection, doc_id, partition_key=partition_key)


@pytest.fixture
def annotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # The service opens this store as it opens SQLite (visiondock.storage.open_document_store).
    monkeypatch.setattr(sqlite_backend, "SqliteDocumentStore", CountingSqliteStore)
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(create_app(settings), headers=AUTH) as client:
        for project, kind in (("colours", "multiclass"), ("palette", "multilabel"), ("shelf", "detection")):
            client.post("/v1/projects", json={"id": project, "type": kind, "tags": ["red", "blue"]})
        yield client


def project_reads(call: Any) -> int:
    CountingSqliteStore.reads.clear()
    response = call()
    assert response.status_code in (200, 201), response.text
    return CountingSqliteStore.reads[PROJECTS]


def _hand_over(client: TestClient, project: str, item_id: str, prediction: dict[str, Any]) -> None:
    capture = {"model": project, "version": 1, "task": "multiclass", "uncertainty": 0.4, "prediction": prediction}
    response = client.put(f"/v1/projects/{project}/review-items/{item_id}", data={"capture": json.dumps(capture)},
                          files={"image": (f"{item_id}.jpg", jpeg((30, 60, 90)), "image/jpeg")})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("project", "prediction", "body"), [
    ("colours", {"label": "red", "probability": 0.6}, None),
    ("colours", {"label": "red", "probability": 0.6}, {"tags": ["blue"]}),
    ("palette", {"tags": [{"label": "red", "probability": 0.7}]}, None),
    ("shelf", {"detections": [{"label": "red", "score": 0.9, "region": BOX}]}, None),
])
def test_a_review_accept_reads_its_project_once(annotation: TestClient, project: str, prediction: dict[str, Any],
                                                body: dict[str, Any] | None) -> None:
    _hand_over(annotation, project, "item-1", prediction)
    accept = f"/v1/projects/{project}/review-items/item-1/accept"
    assert project_reads(lambda: annotation.post(accept, json=body)) == 1
    assert project_reads(lambda: annotation.post(f"/v1/projects/{project}/review-items/item-1/reopen")) == 1


def test_labeling_requests_read_their_project_once(annotation: TestClient) -> None:
    files = [("files", (f"{i}.jpg", jpeg((40 * i, 10, 10)), "image/jpeg")) for i in range(3)]
    upload = annotation.post("/v1/projects/colours/images", files=files, data={"tags": "red"})
    ids = [result["image"]["id"] for result in upload.json()["results"]]
    assert project_reads(lambda: annotation.post("/v1/projects/colours/images",
                                                 files=[("files", ("x.jpg", jpeg((1, 2, 3)), "image/jpeg"))],
                                                 data={"tags": "red"})) == 1
    assert project_reads(lambda: annotation.put(f"/v1/projects/colours/images/{ids[0]}/tags",
                                                json={"tags": ["blue"]})) == 1
    assert project_reads(lambda: annotation.post("/v1/projects/colours/images/bulk/tags",
                                                 json={"image_ids": ids, "add": ["blue"]})) == 1
    assert project_reads(lambda: annotation.post("/v1/projects/colours/tags/blue/rename",
                                                 json={"name": "navy"})) == 1
    boxes = annotation.post("/v1/projects/shelf/images", files=files[:1]).json()["results"][0]["image"]
    assert project_reads(lambda: annotation.put(f"/v1/projects/shelf/images/{boxes['id']}/regions",
                                                json={"regions": [BOX]})) == 1
