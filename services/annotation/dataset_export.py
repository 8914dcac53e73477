"""A project's labeled images as a dataset archive in one of the formats, streamed as a zip.

The selection is read first (documents only: a 404 or 400 can still be answered), then the
archive streams image by image from the BlobStore; nothing holds the whole dataset. The
selection is every labeled image, one split's, or an explicit list of image ids (a dataset
snapshot, e.g. the images a model version was trained on).
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from visiondock.blob_keys import image_blob_key
from visiondock.errors import InvalidInput, NotFound
from visiondock.storage import Document, DocumentNotFoundError, Filter, Query

from .datasets import FORMATS, SUFFIX_BY_CONTENT_TYPE, Box, DatasetFormat, ExportImage, stream_zip
from .images import IMAGES, ImageLibrary
from .project import Project, ProjectRef
from .projects import ProjectCatalog

MAX_LISTED_IDS = 100_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportPlan:
    """What an export will hold, known before the first byte is sent."""

    project: Project
    fmt: DatasetFormat
    documents: list[dict[str, Any]]
    left_out: int  # unlabeled images in the selection, or negatives the format cannot carry

    @property
    def filename(self) -> str:
        return f"{self.project.id}-{self.fmt.name}.zip"


def export_names(documents: Sequence[dict[str, Any]]) -> list[str]:
    """A file name per image: its own name made safe, unique by stem (annotation files are named
    after it), with the right suffix for its bytes."""
    names, stems = [], set()
    for doc in documents:
        stem, suffix = posixpath.splitext(posixpath.basename(doc.get("filename") or "") or doc["id"])
        stem = _UNSAFE.sub("_", stem).strip("._") or doc["id"][:16]
        wanted = SUFFIX_BY_CONTENT_TYPE.get(doc["content_type"], ".img")
        suffix = suffix.lower() if suffix.lower() in (wanted, ".jpeg" if wanted == ".jpg" else wanted) else wanted
        if stem.lower() in stems:
            stem = f"{stem}-{doc['id'][:12]}"
        stems.add(stem.lower())
        names.append(stem + suffix)
    return names


class DatasetExporter:
    def __init__(self, library: ImageLibrary, projects: ProjectCatalog) -> None:
        self.library = library
        self.projects = projects

    def plan(self, project: ProjectRef, fmt: DatasetFormat, *, split: str | None = None,
             image_ids: Sequence[str] | None = None) -> ExportPlan:
        project = self.projects.resolve(project)
        project_id = project.id
        if project.type not in fmt.exports:
            usable = ", ".join(name for name, other in FORMATS.items() if project.type in other.exports)
            raise InvalidInput(f"format {fmt.name} cannot hold a {project.type} project; use {usable}")
        if image_ids is not None:
            documents = self._listed(project_id, image_ids, split)
        else:
            filters = [Filter("labeled", "eq", True)]
            if split is not None:
                filters.append(Filter("split", "eq", None if split == "none" else split))
            query = Query(partition_key=project_id, filters=filters, order_by="created_at")
            documents = [doc.data for doc in self.library.documents.query_all(IMAGES, query)]
        kept = [doc for doc in documents if doc.get("labeled")
                and (fmt.carries_negatives or doc.get("tags") or doc.get("regions"))]
        return ExportPlan(project, fmt, kept, len(documents) - len(kept))

    def _listed(self, project_id: str, image_ids: Sequence[str], split: str | None) -> list[dict[str, Any]]:
        if len(image_ids) > MAX_LISTED_IDS:
            raise InvalidInput(f"at most {MAX_LISTED_IDS:,} image ids per export; got {len(image_ids):,}")
        documents, missing = [], []
        for image_id in dict.fromkeys(image_ids):
            try:
                doc: Document = self.library.documents.get(IMAGES, image_id, partition_key=project_id)
            except DocumentNotFoundError:
                missing.append(image_id)
                continue
            if split is None or doc.data.get("split") == (None if split == "none" else split):
                documents.append(doc.data)
        if missing:
            shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
            raise NotFound(f"{len(missing)} of the listed images are not in project {project_id!r}: {shown}")
        return documents

    def stream(self, plan: ExportPlan) -> Iterator[bytes]:
        tags = [tag["name"] for tag in self.projects.list_tags(plan.project)]
        return stream_zip(plan.fmt.write(self._images(plan), project_type=plan.project.type, tags=tags))

    def _images(self, plan: ExportPlan) -> Iterator[ExportImage]:
        project_id = plan.project.id
        for doc, name in zip(plan.documents, export_names(plan.documents), strict=True):
            width, height = doc["width"], doc["height"]
            boxes = [Box(r["tag"], r["left"] * width, r["top"] * height, (r["left"] + r["width"]) * width,
                         (r["top"] + r["height"]) * height) for r in doc.get("regions") or []]
            key = image_blob_key(project_id, doc["id"])
            yield ExportImage(doc["id"], name, width, height, list(doc.get("tags") or []), boxes,
                              functools.partial(self.library.blobs.stream, key))

