"""Nothing is half-written: the blob goes in first, and leaves again if its document cannot be written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from services.annotation.images import ImageLibrary, image_blob_key
from services.annotation.projects import ProjectCatalog
from visiondock.storage import Document
from visiondock.storage.blobs_local import LocalBlobStore
from visiondock.storage.documents_sqlite import SqliteDocumentStore

from .conftest import jpeg


class DiskFullDocuments(SqliteDocumentStore):
    """A real SQLite store whose image writes fail, as a full disk or a lost connection would."""

    def create(self, collection: str, data: Mapping[str, Any], *, partition_key: str) -> Document:
        if collection == "images":
            raise OSError("database or disk is full")
        return super().create(collection, data, partition_key=partition_key)


def test_failed_document_write_removes_the_new_blob(tmp_path: Path) -> None:
    documents = DiskFullDocuments(tmp_path / "docs.sqlite3")
    blobs = LocalBlobStore(tmp_path / "blobs")
    projects = ProjectCatalog(documents)
    projects.create("shelf", "multiclass", tags=["a"])
    library = ImageLibrary(documents, blobs, projects)
    with pytest.raises(OSError, match="disk is full"):
        library.upload("shelf", [("i.jpg", jpeg())])
    assert list(blobs.list("images/")) == []


def test_failed_write_of_a_duplicate_keeps_the_existing_images_blob(tmp_path: Path) -> None:
    documents = SqliteDocumentStore(tmp_path / "docs.sqlite3")
    blobs = LocalBlobStore(tmp_path / "blobs")
    projects = ProjectCatalog(documents)
    projects.create("shelf", "multiclass", tags=["a"])
    image = ImageLibrary(documents, blobs, projects).upload("shelf", [("i.jpg", jpeg())])[0].image
    assert image is not None
    # A second library whose writes fail sees the same bytes again: a duplicate, and the blob stays.
    failing = ImageLibrary(DiskFullDocuments(tmp_path / "docs.sqlite3"), blobs, projects)
    outcome = failing.upload("shelf", [("again.jpg", jpeg())])[0]
    assert outcome.status == "duplicate"
    assert blobs.exists(image_blob_key("shelf", image["id"]))
