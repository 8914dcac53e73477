"""Nothing stored is lost or left half-written: review accepts never overwrite a person's labels,
a delete racing an upload of the same bytes leaves no document without its blob, silent training
runs become `lost`, `visiondock fsck` finds and repairs strays, and the open /readyz says little."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cli.local_services import LocalServices
from cli.main import main as cli_main
from services.annotation.app import create_app as annotation_app
from services.annotation.images import IMAGE_BLOBS, IMAGES, ImageLibrary, image_blob_key
from services.annotation.projects import ProjectCatalog
from services.annotation.review import REVIEW_BLOBS
from services.registry.app import create_app as registry_app
from services.registry.catalog import VERSION_BLOBS
from services.trainer.steps import RunSteps
from tests.scoring.conftest import AppFactory
from visiondock.captures import CAPTURES, LEGACY_CAPTURE_BLOBS
from visiondock.captures import summary as capture_summary
from visiondock.clients import RegistryClient
from visiondock.fsck import check, repair
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.storage import DocumentNotFoundError
from visiondock.storage.blobs_local import LocalBlobStore
from visiondock.storage.documents_sqlite import SqliteDocumentStore

AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def annotation(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(annotation_app(Settings(home=tmp_path, log_format="text", log_level="WARNING")),
                    headers=AUTH) as client:
        client.post("/v1/projects", json={"id": "colours", "type": "multiclass", "tags": ["red", "blue"]})
        yield client


def _hand_over(client: TestClient, item_id: str, image: bytes, label: str) -> dict[str, Any]:
    capture = {"model": "colours", "version": 1, "task": "multiclass", "uncertainty": 0.4,
               "prediction": {"label": label, "probability": 0.6}}
    response = client.put(f"/v1/projects/colours/review-items/{item_id}",
                          files={"image": (f"{item_id}.png", image, "image/png")},
                          data={"capture": json.dumps(capture)})
    assert response.status_code == 201, response.text
    return response.json()


# -- review accepts -----------------------------------------------------------------------
def test_accepting_a_prediction_keeps_a_persons_labels(annotation: TestClient) -> None:
    photo = _png((200, 0, 0))
    uploaded = annotation.post("/v1/projects/colours/images", files=[("files", ("p.png", photo, "image/png"))],
                               data={"tags": "blue"}).json()["results"][0]["image"]
    _hand_over(annotation, "item-1", photo, "red")
    accepted = annotation.post("/v1/projects/colours/review-items/item-1/accept")
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["item"]["labels_from"] == "existing" and body["item"]["image_id"] == uploaded["id"]
    assert body["image"]["tags"] == ["blue"]
    assert annotation.get(f"/v1/projects/colours/images/{uploaded['id']}").json()["tags"] == ["blue"]


def test_a_reviewers_explicit_tags_relabel_an_image_already_labeled(annotation: TestClient) -> None:
    photo = _png((0, 200, 0))
    uploaded = annotation.post("/v1/projects/colours/images", files=[("files", ("g.png", photo, "image/png"))],
                               data={"tags": "blue"}).json()["results"][0]["image"]
    _hand_over(annotation, "item-explicit", photo, "red")
    accepted = annotation.post("/v1/projects/colours/review-items/item-explicit/accept", json={"tags": ["red"]})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["item"]["labels_from"] == "reviewer"
    assert annotation.get(f"/v1/projects/colours/images/{uploaded['id']}").json()["tags"] == ["red"]


def test_an_item_being_accepted_cannot_be_accepted_again(annotation: TestClient) -> None:
    item = _hand_over(annotation, "item-2", _png((0, 0, 200)), "blue")
    queue = annotation.app.state.review  # type: ignore[attr-defined]
    queue._claim(queue.get("colours", "item-2"), "alice")  # alice's accept is in progress
    second = annotation.post("/v1/projects/colours/review-items/item-2/accept", json={"tags": ["red"]})
    assert second.status_code == 409 and "alice" in second.json()["detail"]
    stale = annotation.post("/v1/projects/colours/review-items/item-2/accept", headers={"If-Match": item["etag"]})
    assert stale.status_code == 412
    assert annotation.get("/v1/projects/colours/images").json()["data"] == []  # nothing was labeled


# -- a delete racing an upload of the same bytes --------------------------------------------
class InterleavingBlobStore(LocalBlobStore):
    """The local store, running `before_delete` / `after_put` once at the moment a concurrent
    request would interleave there."""

    before_delete: Callable[[], None] | None = None
    after_put: Callable[[], None] | None = None

    def delete(self, key: str) -> bool:
        hook, self.before_delete = self.before_delete, None
        if hook is not None:
            hook()
        return super().delete(key)

    def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        info = super().put(key, data, **kwargs)
        hook, self.after_put = self.after_put, None
        if hook is not None:
            hook()
        return info


@pytest.fixture
def library(tmp_path: Path) -> Iterator[tuple[ImageLibrary, SqliteDocumentStore, InterleavingBlobStore]]:
    documents = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    blobs = InterleavingBlobStore(tmp_path / "blobs")
    projects = ProjectCatalog(documents)
    projects.create("p", "multiclass", tags=["red"])
    yield ImageLibrary(documents, blobs, projects), documents, blobs
    documents.close()


def _consistent(documents: SqliteDocumentStore, blobs: LocalBlobStore, image_id: str) -> bool:
    try:
        documents.get(IMAGES, image_id, partition_key="p")
    except DocumentNotFoundError:
        return True
    return blobs.exists(image_blob_key("p", image_id))


def test_an_upload_landing_between_a_deletes_two_writes_keeps_its_bytes(library: Any) -> None:
    images, documents, blobs = library
    photo = _png((10, 20, 30))
    image_id = images.upload("p", [("a.png", photo)])[0].image["id"]
    # The delete has removed the document; before it removes the blob, the same bytes are uploaded again.
    blobs.before_delete = lambda: images.upload("p", [("again.png", photo)])
    images.delete("p", image_id, if_match=None)
    assert _consistent(documents, blobs, image_id)
    assert images.get("p", image_id).data["filename"] == "again.png"
    assert blobs.get(image_blob_key("p", image_id)) == photo


def test_a_delete_landing_between_an_uploads_two_writes_leaves_its_bytes(library: Any) -> None:
    images, documents, blobs = library
    photo = _png((30, 20, 10))
    key = image_blob_key("p", images.upload("p", [("a.png", photo)])[0].image["id"])
    image_id = key.rsplit("/", 1)[1]
    documents.delete(IMAGES, image_id, partition_key="p")  # a delete's first write...
    blobs.after_put = lambda: LocalBlobStore.delete(blobs, key)  # ...and its second, after the upload's put
    assert images.upload("p", [("again.png", photo)])[0].status == "created"
    assert _consistent(documents, blobs, image_id) and blobs.get(key) == photo


# -- training runs ----------------------------------------------------------------------------
def test_a_silent_run_becomes_lost_and_heartbeats_keep_one_alive(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING", run_lost_after_seconds=1.0)
    with TestClient(registry_app(settings), headers=AUTH) as client:
        silent = client.post("/v1/runs", json={"model": "m"}).json()["id"]
        beating = client.post("/v1/runs", json={"model": "m"}).json()["id"]
        queued = client.post("/v1/runs", json={"model": "m"}).json()["id"]
        for run_id in (silent, beating):
            assert client.patch(f"/v1/runs/{run_id}", json={"status": "running", "stage": "train"}).status_code == 200
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            assert client.patch(f"/v1/runs/{beating}", json={}).status_code == 200  # a heartbeat
            time.sleep(0.2)
        lost = client.get(f"/v1/runs/{silent}").json()
        assert lost["status"] == "lost" and "heartbeat" in lost["error"] and lost["finished_at"]
        assert client.get(f"/v1/runs/{beating}").json()["status"] == "running"
        assert client.get(f"/v1/runs/{queued}").json()["status"] == "queued"  # waiting for a node is not silence
        late = client.patch(f"/v1/runs/{silent}", json={"status": "running", "epoch": 3})
        assert late.status_code == 409
        assert {r["id"] for r in client.get("/v1/runs", params={"status": "lost"}).json()["data"]} == {silent}


def test_the_trainers_steps_send_heartbeats(services: LocalServices) -> None:
    with services.another("registry", "registry-heartbeats", env={"VISIONDOCK_RUN_LOST_AFTER_SECONDS": "1.5"}) as \
            process, RegistryClient(process.url, LOCAL_DEV_API_KEY) as registry:
        run_id = registry.create_run("m")["id"]
        reporter = RunSteps(registry, run_id)
        reporter.stage("train")
        reporter.start_heartbeat(interval=0.3)
        time.sleep(3)
        assert registry.get_run(run_id)["status"] == "running"
        reporter.stop_heartbeat()
        time.sleep(2.5)
        assert registry.get_run(run_id)["status"] == "lost"


# -- fsck ----------------------------------------------------------------------------------------
def test_fsck_finds_and_repairs_strays_in_a_dry_run_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        client.post("/v1/projects", json={"id": "p", "type": "multiclass", "tags": ["red"]})
        results = client.post("/v1/projects/p/images", files=[
            ("files", (f"{i}.png", _png((i, 0, 0)), "image/png")) for i in range(3)]).json()["results"]
    kept, lost_bytes, _ = (r["image"]["id"] for r in results)
    documents = SqliteDocumentStore(settings.resolved_sqlite_path)
    blobs = LocalBlobStore(settings.resolved_blob_root)
    pairings = [IMAGE_BLOBS, REVIEW_BLOBS, VERSION_BLOBS]
    try:
        blobs.delete(image_blob_key("p", lost_bytes))  # a document without its blob
        blobs.put("images/p/" + "f" * 64, b"half an upload")  # a blob without its document
        fresh = list(check(documents, blobs, pairings))
        assert [p.action for p in fresh if p.kind == "blob_without_document"] == ["keep: younger than the grace period"]
        later = datetime.now(UTC) + timedelta(hours=1)
        problems = list(check(documents, blobs, pairings, now=later))
        assert {(p.kind, p.action) for p in problems} == {("document_without_blob", "delete the document"),
                                                          ("blob_without_document", "delete the blob")}
    finally:
        documents.close()

    monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path))
    assert cli_main(["fsck", "--grace-minutes", "0"]) == 1  # dry run: reports, changes nothing
    assert "2 problem(s) found; nothing changed" in capsys.readouterr().out
    assert blobs.exists("images/p/" + "f" * 64)
    assert cli_main(["fsck", "--repair", "--grace-minutes", "0"]) == 0
    assert "2 repaired" in capsys.readouterr().out
    assert cli_main(["fsck"]) == 0
    documents = SqliteDocumentStore(settings.resolved_sqlite_path)
    try:
        assert documents.get(IMAGES, kept, partition_key="p")
        assert not repair(documents, blobs, check(documents, blobs, pairings), pairings)
    finally:
        documents.close()


# -- the open readiness probe -------------------------------------------------------------------
def test_the_open_readyz_says_only_ready_or_not(serve: AppFactory, models: dict[str, Path]) -> None:
    with serve(models["face"]) as client:
        anonymous = client.get("/readyz", headers={"X-API-Key": ""})
        with_key = client.get("/readyz")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ready", "service": "scoring"}
    assert with_key.json()["model"]["labels"]  # the details, names of people included, need a key
    assert with_key.status_code == httpx.codes.OK


# -- retention of captured images ----------------------------------------------------------------
def test_captured_predictions_are_purged_after_the_retention_period(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        client.post("/v1/projects", json={"id": "colours", "type": "multiclass", "tags": ["red", "blue"]})
        for index in range(3):
            _hand_over(client, f"item-{index}", _png((index, 9, 9)), "red")
        accepted = client.post("/v1/projects/colours/review-items/item-0/accept").json()["image"]
    monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path))
    assert cli_main(["purge-captures"]) == 0  # nothing is 30 days old
    assert "purged 0" in capsys.readouterr().out
    assert cli_main(["purge-captures", "--older-than-days", "0", "--dry-run"]) == 0
    assert "would purge 3" in capsys.readouterr().out
    assert cli_main(["purge-captures", "--older-than-days", "0"]) == 0
    assert "purged 3" in capsys.readouterr().out
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        assert client.get("/v1/projects/colours/review-items", params={"status": "all"}).json()["data"] == []
        # The accepted one lives on as a labeled project image.
        assert client.get(f"/v1/projects/colours/images/{accepted['id']}/content").status_code == 200
    assert not any(LocalBlobStore(settings.resolved_blob_root).list("review/"))


# -- captures: one copy, under retention, known to fsck, gone with their project, read as summaries --------------
def _summary(documents: SqliteDocumentStore, model: str, capture_id: str, project: str, label: str,
             at: datetime) -> None:
    document = {"model": model, "version": 1, "task": "multiclass", "uncertainty": 0.2, "captured_at": at.isoformat(),
                "prediction": {"label": label, "probability": 0.8, "predictions": [{"label": label}]}}
    documents.put(CAPTURES, capture_summary(capture_id, document, project), partition_key=model)


def test_capture_summaries_and_old_copies_follow_retention_fsck_and_project_deletion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    now = datetime.now(UTC)
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        for project in ("colours", "shapes"):
            client.post("/v1/projects", json={"id": project, "type": "multiclass", "tags": ["red"]})
    documents = SqliteDocumentStore(settings.resolved_sqlite_path)
    blobs = LocalBlobStore(settings.resolved_blob_root)
    try:
        _summary(documents, "colours", "old", "colours", "red", now - timedelta(days=40))
        _summary(documents, "colours", "new", "colours", "red", now)
        _summary(documents, "shapes", "kept", "shapes", "red", now)
        # What a scoring service of the old layout kept beside the review item: a second copy.
        blobs.put("captures/colours/20250101T000000Z-abc.jpg", _png((1, 2, 3)))
        blobs.put("captures/colours/20250101T000000Z-abc.json", b"{}")
        # fsck knows them: owned by nothing, deleted by --repair.
        problems = list(check(documents, blobs, [LEGACY_CAPTURE_BLOBS], now=now + timedelta(hours=1)))
        assert sorted(p.blob_key for p in problems) == ["captures/colours/20250101T000000Z-abc.jpg",
                                                         "captures/colours/20250101T000000Z-abc.json"]
        assert len(repair(documents, blobs, problems, [LEGACY_CAPTURE_BLOBS])) == 2
        assert not list(blobs.list("captures/"))
        blobs.put("captures/colours/20250101T000000Z-def.jpg", _png((1, 2, 3)))
    finally:
        documents.close()
    monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path))
    # Retention: the summary captured 40 days ago and the old copies past it go; today's stay.
    assert cli_main(["purge-captures", "--older-than-days", "30"]) == 0
    documents = SqliteDocumentStore(settings.resolved_sqlite_path)
    try:
        assert sorted(d.id for d in documents.query_all(CAPTURES)) == ["kept", "new"]
        assert list(blobs.list("captures/")) != []  # written seconds ago: within the retention period
        assert cli_main(["purge-captures", "--older-than-days", "0"]) == 0
        assert not list(blobs.list("captures/"))
        _summary(documents, "colours", "again", "colours", "red", now)
        _summary(documents, "shapes", "theirs", "shapes", "red", now)
    finally:
        documents.close()
    # Deleting a project deletes what was captured for it.
    with TestClient(annotation_app(settings), headers=AUTH) as client:
        assert client.delete("/v1/projects/colours", params={"confirm": "true"}).status_code == 200
    documents = SqliteDocumentStore(settings.resolved_sqlite_path)
    try:
        assert [d.id for d in documents.query_all(CAPTURES)] == ["theirs"]
    finally:
        documents.close()


def test_the_production_report_reads_capture_summaries_not_blobs(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    now = datetime.now(UTC)
    with TestClient(registry_app(settings), headers=AUTH) as client:
        documents = SqliteDocumentStore(settings.resolved_sqlite_path)
        try:
            for index in range(4):
                _summary(documents, "colours", f"c{index}", "colours", "red" if index else "blue",
                         now - timedelta(minutes=index))
            _summary(documents, "colours", "too-old", "colours", "blue", now - timedelta(days=30))
        finally:
            documents.close()
        # A stray copy under the old prefix is not a capture the report counts.
        stray = {"model": "colours", "version": 1, "captured_at": now.isoformat(), "prediction": {"label": "red"}}
        LocalBlobStore(settings.resolved_blob_root).put("captures/colours/x.json", json.dumps(stray).encode())
        metadata = json.dumps({"task": "multiclass", "labels": ["red", "blue"]})
        client.post("/v1/models/colours/versions", files={"model": ("model.onnx", b"onnx")},
                    data={"metadata": metadata})
        report = client.get("/v1/models/colours/production", params={"window_minutes": 60, "windows": 2}).json()
    assert report["captured"] == 4 and sum(report["requests"]) == 4
    assert report["versions"][0]["overall"]["label_counts"] == {"red": 3, "blue": 1}
