"""Imports go in by batches (one lookup, parallel blob writes, one history write, one document write)
and stay whole: when a write fails midway, every image is either all there (bytes, document, labels,
history entry) or not at all, on each backend (local files + SQLite, Azurite + cosmosdb-server).
The failing stores are the real backends with one write made to fail, as a dropped connection would."""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from services.annotation.dataset_import import IMPORT_BATCH, DatasetImporter
from services.annotation.datasets import FolderSource, get_format
from services.annotation.history import LABEL_HISTORY, LabelHistory
from services.annotation.images import IMAGES, ImageLibrary, image_blob_key
from services.annotation.projects import ProjectCatalog
from visiondock.images import sha256_hex
from visiondock.storage import (
    BlobError,
    BlobInfo,
    BlobStore,
    Document,
    DocumentError,
    DocumentNotFoundError,
    DocumentStore,
    Query,
)
from visiondock.storage.blobs import DEFAULT_CONTENT_TYPE
from visiondock.storage.blobs_local import LocalBlobStore
from visiondock.storage.documents_sqlite import SqliteDocumentStore

from .conftest import jpeg

PROJECT = "flowers"
CLASSES = ("rose", "tulip")
COUNT = IMPORT_BATCH + 8  # two batches: one whole, one that a failure cuts


@dataclass
class Backend:
    """How to open the backend's real stores, or a subclass of them."""

    documents_type: type[DocumentStore]
    documents_args: dict[str, Any]
    blobs_type: type[BlobStore]
    blobs_args: dict[str, Any]
    opened: list[Any] = field(default_factory=list)

    def documents(self, cls: type[DocumentStore] | None = None) -> DocumentStore:
        store = (cls or self.documents_type)(**self.documents_args)
        self.opened.append(store)
        return store

    def blobs(self, cls: type[BlobStore] | None = None) -> BlobStore:
        store = (cls or self.blobs_type)(**self.blobs_args)
        self.opened.append(store)
        return store


@pytest.fixture(params=["embedded", pytest.param("azure", marks=pytest.mark.azure)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "embedded":
        opened = Backend(SqliteDocumentStore, {"path": tmp_path / "documents.sqlite3"},
                         LocalBlobStore, {"root": tmp_path / "blobs"})
    else:
        from visiondock.storage.blobs_azure import AzureBlobStore
        from visiondock.storage.documents_cosmos import CosmosDocumentStore

        cosmos, azurite = request.getfixturevalue("cosmosdb_server"), request.getfixturevalue("azurite_blob")
        opened = Backend(CosmosDocumentStore, {"endpoint": cosmos.endpoint, "key": cosmos.key,
                                               "database": request.getfixturevalue("cosmos_database"),
                                               "endpoint_discovery": False},
                         AzureBlobStore, {"connection_string": azurite.connection_string,
                                          "container": request.getfixturevalue("azure_blob_container")})
    yield opened
    for store in opened.opened:
        store.close()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """COUNT distinct labeled photos in the folder format: <class>/<n>.jpg."""
    root = tmp_path / "dataset"
    for n in range(COUNT):
        folder = root / CLASSES[n % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:03d}.jpg").write_bytes(jpeg((n * 6 % 256, 255 - n * 5 % 256, n * 11 % 256)))
    return root


def image_ids(root: Path) -> set[str]:
    return {sha256_hex(path.read_bytes()) for path in root.rglob("*.jpg")}


def run_import(documents: DocumentStore, blobs: BlobStore, root: Path) -> dict[str, Any]:
    projects = ProjectCatalog(documents)
    library = ImageLibrary(documents, blobs, projects, history=LabelHistory(documents))
    fmt = get_format("folder")
    source = FolderSource(root)
    return DatasetImporter(library, projects).run(PROJECT, fmt, fmt.read(source), source.read)


def whole_images(documents: DocumentStore, blobs: BlobStore, expected: set[str]) -> set[str]:
    """The images that are all there; fails on any half-written one or anything stored beside them."""
    images = {doc.id: doc.data for doc in documents.query_all(IMAGES, Query(partition_key=PROJECT))}
    history = Counter(doc.data["image_id"] for doc in documents.query_all(LABEL_HISTORY, Query(partition_key=PROJECT)))
    stored_blobs = {info.key for info in blobs.list(f"images/{PROJECT}/")}
    assert set(images) <= expected
    for image_id in expected:
        if image_id in images:
            data = images[image_id]
            assert data["labeled"] and data["tags"] in (["rose"], ["tulip"]), data
            assert image_blob_key(PROJECT, image_id) in stored_blobs, f"{image_id}: a document without its bytes"
            assert history[image_id] == 1, f"{image_id}: {history[image_id]} history entries"
        else:
            assert image_blob_key(PROJECT, image_id) not in stored_blobs, f"{image_id}: stray bytes"
            assert history[image_id] == 0, f"{image_id}: history of an image that is not there"
    assert stored_blobs == {image_blob_key(PROJECT, image_id) for image_id in images}
    return set(images)


def failing_on_put(base: type[BlobStore], failing_put: int) -> type[BlobStore]:
    class FailingBlobs(base):  # type: ignore[misc, valid-type]
        """The real blob store, whose `failing_put`-th write (counted from any thread) fails."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.puts = itertools.count(1)

        def put(self, key: str, data: bytes | BinaryIO, *, content_type: str = DEFAULT_CONTENT_TYPE,
                overwrite: bool = True) -> BlobInfo:
            if next(self.puts) == failing_put:
                raise BlobError(f"connection lost while writing {key}")
            return super().put(key, data, content_type=content_type, overwrite=overwrite)

    return FailingBlobs


def interrupting(base: type[DocumentStore], collection: str, nth: int,
                 write: Callable[[Callable[[], Any]], Any]) -> type[DocumentStore]:
    """The real document store, whose write that would store the `nth` document of `collection`
    (one by one or in a batch) goes through `write`, given the real write to call, or not."""

    class Interrupted(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.written = 0

        def _interrupt(self, target: str, count: int, real: Callable[[], Any]) -> Any:
            if target == collection and self.written < nth <= self.written + count:
                self.written += count
                return write(real)
            self.written += count if target == collection else 0
            return real()

        def create(self, target: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
            return self._interrupt(target, 1, lambda: super(Interrupted, self).create(
                target, data, partition_key=partition_key))

        def create_many(self, target: str, documents: Sequence[Mapping[str, Any]], *,
                        partition_key: str) -> list[Document]:
            return self._interrupt(target, len(documents), lambda: super(Interrupted, self).create_many(
                target, documents, partition_key=partition_key))

    return Interrupted


def lost_connection(real: Callable[[], Any]) -> Any:
    raise DocumentError("Cosmos DB request failed: connection reset")


def answer_lost(real: Callable[[], Any]) -> Any:
    real()
    raise DocumentError("Cosmos DB request failed: connection reset while reading the answer")


def start_project(documents: DocumentStore) -> None:
    ProjectCatalog(documents).create(PROJECT, "multiclass")


def test_a_failed_blob_write_leaves_each_image_whole_or_absent_and_a_rerun_finishes(
        backend: Backend, dataset: Path) -> None:
    documents = backend.documents()
    start_project(documents)
    failing = backend.blobs(failing_on_put(backend.blobs_type, IMPORT_BATCH + 3))

    with pytest.raises(BlobError, match="connection lost"):
        run_import(documents, failing, dataset)

    expected = image_ids(dataset)
    blobs = backend.blobs()
    assert len(whole_images(documents, blobs, expected)) == IMPORT_BATCH  # the first batch, all of it
    report = run_import(documents, blobs, dataset)
    assert (report["created"], report["duplicates"], report["unchanged"], report["labeled"]) == (
        COUNT - IMPORT_BATCH, IMPORT_BATCH, IMPORT_BATCH, COUNT - IMPORT_BATCH)
    assert whole_images(documents, blobs, expected) == expected


@pytest.mark.parametrize(("collection", "write"), [(IMAGES, lost_connection), (LABEL_HISTORY, lost_connection)],
                         ids=["image-documents", "history"])
def test_a_failed_document_write_leaves_each_image_whole_or_absent(
        backend: Backend, dataset: Path, collection: str, write: Any) -> None:
    documents = backend.documents(interrupting(backend.documents_type, collection, IMPORT_BATCH + 3, write))
    start_project(documents)
    blobs = backend.blobs()

    with pytest.raises(DocumentError, match="connection reset"):
        run_import(documents, blobs, dataset)

    assert len(whole_images(documents, blobs, image_ids(dataset))) == IMPORT_BATCH


def test_documents_written_whose_answer_was_lost_keep_their_bytes_and_history(
        backend: Backend, dataset: Path) -> None:
    documents = backend.documents(interrupting(backend.documents_type, IMAGES, IMPORT_BATCH + 3, answer_lost))
    start_project(documents)
    blobs = backend.blobs()

    with pytest.raises(DocumentError, match="reading the answer"):
        run_import(documents, blobs, dataset)

    expected = image_ids(dataset)
    assert whole_images(documents, blobs, expected) == expected


def test_an_image_a_concurrent_upload_stores_first_becomes_a_duplicate(backend: Backend, dataset: Path) -> None:
    blobs = backend.blobs()
    racer_photo = sorted(dataset.rglob("*.jpg"))[5]

    def racing_upload(real: Callable[[], Any]) -> Any:
        # Someone uploads one of the batch's photos (unlabeled) between the lookup and the write.
        other = backend.documents()
        ImageLibrary(other, blobs, ProjectCatalog(other)).upload(PROJECT, [("race.jpg", racer_photo.read_bytes())])
        return real()

    documents = backend.documents(interrupting(backend.documents_type, IMAGES, 6, racing_upload))
    start_project(documents)

    report = run_import(documents, blobs, dataset)

    assert (report["created"], report["duplicates"], report["labeled"]) == (COUNT - 1, 1, COUNT)
    assert whole_images(documents, blobs, image_ids(dataset)) == image_ids(dataset)
    raced = documents.get(IMAGES, sha256_hex(racer_photo.read_bytes()), partition_key=PROJECT).data
    assert raced["filename"] == "race.jpg" and raced["tags"] == [racer_photo.parent.name]


class CountingSqlite(SqliteDocumentStore):
    """The SQLite store, counting the calls made to it by (method, collection)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: Counter[tuple[str, str]] = Counter()

    def __getattribute__(self, name: str) -> Any:
        attribute = object.__getattribute__(self, name)
        if name not in ("create", "create_many", "put", "get", "patch", "delete", "query"):
            return attribute
        calls = object.__getattribute__(self, "calls")

        def counted(collection: str, *args: Any, **kwargs: Any) -> Any:
            calls[name, collection] += 1
            return attribute(collection, *args, **kwargs)

        return counted


class CountingBlobs(LocalBlobStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name in ("put", "get", "exists", "delete", "list", "info", "stream"):
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)


def test_an_import_costs_a_fraction_of_a_document_round_trip_per_image(tmp_path: Path, dataset: Path) -> None:
    documents = CountingSqlite(tmp_path / "counted.sqlite3")
    blobs = CountingBlobs(tmp_path / "counted-blobs")
    start_project(documents)
    documents.calls.clear()

    report = run_import(documents, blobs, dataset)

    assert report["created"] == report["labeled"] == COUNT
    # Per batch: the tag check, one lookup by content hash, one history write, one document write.
    # Image by image it was 12 document calls each.
    assert sum(documents.calls.values()) / COUNT < 0.5, documents.calls
    batches = -(-COUNT // IMPORT_BATCH)
    assert documents.calls["query", IMAGES] == batches  # lookups by content hash, never an image read
    assert documents.calls["create_many", IMAGES] == documents.calls["create_many", LABEL_HISTORY] == batches
    assert not {call for call in documents.calls if call[1] in (IMAGES, LABEL_HISTORY)} - {
        ("query", IMAGES), ("create_many", IMAGES), ("create_many", LABEL_HISTORY)}, documents.calls
    # Each image's bytes, and the check that a racing delete did not take them.
    assert blobs.calls == {"put": COUNT, "exists": COUNT}
    documents.close()


def run_import_with(documents: DocumentStore, blobs: BlobStore, projects: ProjectCatalog,
                    root: Path) -> dict[str, Any]:
    library = ImageLibrary(documents, blobs, projects, history=LabelHistory(documents))
    fmt = get_format("folder")
    source = FolderSource(root)
    return DatasetImporter(library, projects).run(PROJECT, fmt, fmt.read(source), source.read)


def test_a_tag_created_meanwhile_is_used_and_one_deleted_meanwhile_skips_only_its_images(
        tmp_path: Path, dataset: Path) -> None:
    documents = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    blobs = LocalBlobStore(tmp_path / "blobs")
    start_project(documents)

    class Meanwhile(ProjectCatalog):
        """Another batch of the import creates `rose` between our look at the tags and our create;
        a person deletes `tulip` before the first batch is stored."""

        def list_tags(self, project_id: str) -> list[dict[str, Any]]:
            tags = super().list_tags(project_id)
            if not any(tag["name"] == "rose" for tag in tags):
                ProjectCatalog(documents).create_tag(project_id, "rose")
            return tags

        def require_tags(self, project_id: str, names: Any) -> None:
            with contextlib.suppress(DocumentNotFoundError):
                documents.delete("tags", "tulip", partition_key=project_id)
            super().require_tags(project_id, names)

    report = run_import_with(documents, blobs, Meanwhile(documents), dataset)

    assert report["tags_created"] == ["tulip"]
    tulips = sorted(str(path.relative_to(dataset)) for path in dataset.glob("tulip/*.jpg"))
    assert sorted(item["path"] for item in report["skipped"]) == tulips
    assert all("unknown tag" in item["reason"] for item in report["skipped"])
    assert report["created"] == report["labeled"] == COUNT - len(tulips)
    roses = image_ids(dataset / "rose")
    assert whole_images(documents, blobs, roses) == roses
    documents.close()


def test_an_upload_keeps_the_order_given_across_batches(tmp_path: Path) -> None:
    documents = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    blobs = LocalBlobStore(tmp_path / "blobs")
    projects = ProjectCatalog(documents)
    projects.create(PROJECT, "multiclass", tags=["rose"])
    library = ImageLibrary(documents, blobs, projects, history=LabelHistory(documents))
    # Two batches of the store's limit; each photo of its own size, so no two are the same bytes.
    photos = [(f"{n:03d}.jpg", jpeg((200, 30, 30), size=(40 + n, 32))) for n in range(150)]
    files = [*photos[:60], ("again.jpg", photos[3][1]), ("broken.jpg", b"not a photo"), *photos[60:]]

    outcomes = library.upload(PROJECT, files, tags=["rose"])

    assert [(o.filename, o.status) for o in outcomes] == [
        *((name, "created") for name, _ in photos[:60]), ("again.jpg", "duplicate"), ("broken.jpg", "rejected"),
        *((name, "created") for name, _ in photos[60:])]
    assert outcomes[60].image is not None and outcomes[60].image["filename"] == "003.jpg"
    listed, _ = library.list(PROJECT, limit=200)
    assert [doc.data["filename"] for doc in listed] == [name for name, _ in photos]
    history = Counter(doc.data["image_id"] for doc in documents.query_all(LABEL_HISTORY, Query(partition_key=PROJECT)))
    assert set(history.values()) == {1} and len(history) == 150
    documents.close()
