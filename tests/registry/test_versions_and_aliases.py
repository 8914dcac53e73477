"""The registry: numbered immutable versions with their files, and aliases that move."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from fastapi.testclient import TestClient

from services.registry.app import create_app
from services.registry.catalog import ModelCatalog
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.storage import BlobInfo
from visiondock.storage.blobs_local import LocalBlobStore
from visiondock.storage.documents_sqlite import SqliteDocumentStore

METADATA = {"task": "multiclass", "labels": ["cat", "dog"], "metrics": {"accuracy": 0.91},
            "splits": {"train": ["a", "b"], "test": ["c"]}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(create_app(settings), headers={"X-API-Key": LOCAL_DEV_API_KEY}) as test_client:
        yield test_client


def register(client: TestClient, model: str, payload: bytes, metadata: dict | None = None) -> dict:
    response = client.post(f"/v1/models/{model}/versions", files={"model": ("model.onnx", payload)},
                           data={"metadata": json.dumps(metadata or METADATA)})
    assert response.status_code == 201, response.text
    return response.json()


def test_versions_are_numbered_and_keep_their_files_and_metrics(client: TestClient) -> None:
    first = register(client, "pets", b"first model bytes")
    second = register(client, "pets", b"second model bytes")
    assert (first["version"], second["version"]) == (1, 2)
    assert first["metrics"] == {"accuracy": 0.91} and first["splits"]["test"] == ["c"]
    assert first["artifact"]["sha256"] == hashlib.sha256(b"first model bytes").hexdigest()
    download = client.get("/v1/models/pets/versions/1/artifacts/model.onnx")
    assert download.content == b"first model bytes"
    assert download.headers["x-content-sha256"] == first["artifact"]["sha256"]
    newest_first = client.get("/v1/models/pets/versions").json()["data"]
    assert [v["version"] for v in newest_first] == [2, 1]
    page = client.get("/v1/models/pets/versions", params={"limit": 1}).json()
    assert [v["version"] for v in page["data"]] == [2] and page["continuation"]
    assert client.get("/v1/models/pets").json()["latest_version"] == 2


def test_concurrent_registrations_never_share_a_number(client: TestClient) -> None:
    versions: list[int] = []

    def one(i: int) -> None:
        versions.append(register(client, "busy", f"model {i}".encode())["version"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(1, 9))


def test_aliases_move_between_versions(client: TestClient) -> None:
    register(client, "pets", b"v1")
    register(client, "pets", b"v2")
    assert client.put("/v1/models/pets/aliases/production", json={"version": 1}).json()["version"] == 1
    resolved = client.get("/v1/models/pets/aliases/production").json()
    assert resolved["model_version"]["version"] == 1
    assert resolved["artifact_url"] == "/v1/models/pets/versions/1/artifacts/model.onnx"
    client.put("/v1/models/pets/aliases/production", json={"version": 2})
    client.put("/v1/models/pets/aliases/staging", json={"version": 1})
    assert client.get("/v1/models/pets").json()["aliases"] == {"production": 2, "staging": 1}
    assert client.delete("/v1/models/pets/aliases/staging").status_code == 204
    assert client.get("/v1/models/pets/aliases/staging").status_code == 404


def test_bad_requests_say_what_is_wrong(client: TestClient) -> None:
    register(client, "pets", b"v1")
    missing_version = client.put("/v1/models/pets/aliases/production", json={"version": 9})
    assert missing_version.status_code == 404 and "no version 9" in missing_version.json()["detail"]
    missing_alias = client.get("/v1/models/pets/aliases/production")
    assert missing_alias.status_code == 404 and "no alias 'production'" in missing_alias.json()["detail"]
    missing_model = client.get("/v1/models/ghost/aliases/production")
    assert missing_model.status_code == 404 and "model 'ghost' does not exist" in missing_model.json()["detail"]
    bad_json = client.post("/v1/models/pets/versions", files={"model": ("m.onnx", b"x")}, data={"metadata": "{"})
    assert bad_json.status_code == 422 and "metadata: Invalid JSON" in bad_json.json()["detail"]
    no_labels = client.post("/v1/models/pets/versions", files={"model": ("m.onnx", b"x")},
                            data={"metadata": json.dumps({"task": "multiclass", "labels": []})})
    assert no_labels.status_code == 422 and "labels" in no_labels.json()["detail"]
    empty = client.post("/v1/models/pets/versions", files={"model": ("m.onnx", b"")},
                        data={"metadata": json.dumps(METADATA)})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    bad_name = client.get("/v1/models/Bad_Name")
    assert bad_name.status_code == 422
    assert client.put("/v1/models/pets/aliases/production", json={"version": 0}).status_code == 422
    # None of the refused registrations took a version.
    assert [v["version"] for v in client.get("/v1/models/pets/versions").json()["data"]] == [1]


class MetadataWriteFails(LocalBlobStore):
    """Real files, but writing a version's metadata fails, as a full disk would."""

    def put(self, key: str, data: bytes | BinaryIO, **options: object) -> BlobInfo:
        if key.endswith("metadata.json"):
            raise OSError("no space left on device")
        return super().put(key, data, **options)  # type: ignore[arg-type]


def test_a_failed_registration_leaves_nothing_behind(tmp_path: Path) -> None:
    documents = SqliteDocumentStore(tmp_path / "docs.sqlite3")
    blobs = MetadataWriteFails(tmp_path / "blobs")
    catalog = ModelCatalog(documents, blobs)
    with pytest.raises(OSError, match="no space"):
        catalog.register("pets", io.BytesIO(b"model"), dict(METADATA))
    assert list(blobs.list("models/")) == []
    items, _ = catalog.list_versions("pets", limit=10, continuation=None)
    assert items == []


ISSUES = [
    {"image_id": "a" * 64, "filename": "cat-7.jpg", "rank": 1, "suspicion": 0.97, "given": "cat",
     "given_probability": 0.03, "suggested": "dog", "suggested_probability": 0.95},
    {"image_id": "b" * 64, "filename": "dog-2.jpg", "rank": 2, "suspicion": 0.85, "given": "dog",
     "given_probability": 0.15, "suggested": "cat", "suggested_probability": 0.85},
]


def test_a_versions_likely_label_errors_are_kept_beside_it_and_listed(client: TestClient, tmp_path: Path) -> None:
    """The trainer sends the ranked list with the version; it is stored as a file of the version (not in the
    version's document, which every listing returns) and served by its own route."""
    metrics = {**METADATA["metrics"], "label_issues": {"count": 2, "checked": 40, "threshold": 0.2}}
    registered = register(client, "pets", b"model-1", {**METADATA, "metrics": metrics, "label_issues": ISSUES})
    assert "label_issues" not in registered and "label_issues" not in client.get("/v1/models/pets/versions/1").json()
    listed = client.get("/v1/models/pets/versions/1/label-issues").json()
    assert listed == {"model": "pets", "version": 1, "threshold": 0.2, "checked": 40, "count": 2, "items": ISSUES}
    first = client.get("/v1/models/pets/versions/1/label-issues", params={"limit": 1}).json()
    assert first["count"] == 2 and first["items"] == ISSUES[:1]
    assert client.get("/v1/models/pets/versions/1/label-issues", params={"limit": 0}).status_code == 422
    # A version without a list (a detector, or one trained before) says so; so does a version that is not there.
    register(client, "pets", b"model-2")
    missing = client.get("/v1/models/pets/versions/2/label-issues")
    assert missing.status_code == 404 and "no list of label issues" in missing.json()["detail"]
    assert client.get("/v1/models/pets/versions/9/label-issues").status_code == 404
    # A malformed list is refused with the field named, and nothing is registered.
    refused = client.post("/v1/models/pets/versions", files={"model": ("model.onnx", b"model-3")},
                          data={"metadata": json.dumps({**METADATA, "label_issues": [{"rank": 0}]})})
    assert refused.status_code == 422 and "label_issues" in refused.text
    assert [v["version"] for v in client.get("/v1/models/pets/versions").json()["data"]] == [2, 1]
    # Deleting the version deletes its list.
    assert list((tmp_path / "blobs").rglob("label-issues.json*"))
    assert client.delete("/v1/models/pets/versions/1").status_code == 204
    assert not list((tmp_path / "blobs").rglob("label-issues.json*"))
