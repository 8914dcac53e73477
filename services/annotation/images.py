"""Images of a project: upload with de-duplication, labels, listing.

An image's id is the SHA-256 of its bytes, so the same photo uploaded twice is one
image. Its bytes live in the BlobStore at `images/<project>/<sha256>`, its metadata
and labels in the `images` collection, partition `<project>`.

Labels never name a tag that is gone: after writing an image's labels the library reads the tags
they name, and where one is being renamed or deleted (or is gone) it relabels the image the way the
rename or delete does. A rename marks the tag before it looks for images carrying it, so of the two
at least one sees the other (`ProjectCatalog.retire_tag`, `curation.py`).

Order of writes: the blob first, then the document, so a document never points at
missing bytes; if the document cannot be written, the blob is removed again unless
another document already owns it. A delete racing an upload of the same bytes: after
its last write each side checks the other's (the upload its blob, the delete the
document) and puts the bytes back when needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from visiondock.errors import Conflict, DomainError, InvalidInput, NotFound, TooLarge
from visiondock.fsck import Pairing
from visiondock.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, InvalidImageError, inspect_image
from visiondock.storage import (
    BlobStore,
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    PreconditionFailedError,
    Query,
)
from visiondock.timeutil import utc_now
from visiondock.vocabulary import DETECTION, MULTICLASS

from .history import LabelChange, LabelHistory
from .projects import ProjectCatalog

IMAGES = "images"
MAX_FILES_PER_UPLOAD = 256
# One upload request, all files together; larger imports are split into several requests.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024

log = logging.getLogger(__name__)


def image_blob_key(project_id: str, image_id: str) -> str:
    return f"images/{project_id}/{image_id}"


def thumbnail_blob_key(project_id: str, image_id: str) -> str:
    return f"thumbnails/{project_id}/{image_id}.jpg"


def _image_of_blob(key: str) -> tuple[str, str] | None:
    parts = key.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 else None


# For `visiondock fsck`: an image document owns its bytes; without them it is worthless.
IMAGE_BLOBS = Pairing("images", IMAGES, "images/", lambda doc: image_blob_key(doc.partition_key, doc.id),
                      _image_of_blob)


def public_image(doc: Document) -> dict[str, Any]:
    return {**doc.data, "etag": doc.etag}


def labels_changed(data: dict[str, Any], change: Callable[[str], str | None]) -> dict[str, Any]:
    """An image's labels with each tag named through `change` (its new name, or None to drop it):
    `{"regions": ...}` for an image labeled with boxes, else `{"tags": ...}`."""
    if data.get("regions"):
        regions = [{**r, "tag": change(r["tag"])} for r in data["regions"] if change(r["tag"]) is not None]
        return {"regions": regions}
    return {"tags": list(dict.fromkeys(t for t in (change(tag) for tag in data["tags"]) if t is not None))}


# Attempts at writing labels over concurrent changes of the same image.
LABEL_RETRIES = 5


@dataclass
class UploadOutcome:
    filename: str
    status: str  # created | duplicate | rejected
    image: dict[str, Any] | None = None
    problem: DomainError | None = None  # why it was rejected

    @property
    def error(self) -> str | None:
        return self.problem.message if self.problem is not None else None


class ImageLibrary:
    def __init__(
        self,
        documents: DocumentStore,
        blobs: BlobStore,
        projects: ProjectCatalog,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        history: LabelHistory | None = None,
    ) -> None:
        self.documents = documents
        self.history = history
        self.blobs = blobs
        self.projects = projects
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    # -- labels --------------------------------------------------------------------
    def _check_tags(self, project: dict[str, Any], tags: Sequence[str]) -> list[str]:
        tags = list(dict.fromkeys(tags))
        if project["type"] == DETECTION:
            raise InvalidInput("detection images are labeled with regions (PUT .../regions), not with tags")
        if project["type"] == MULTICLASS and len(tags) > 1:
            raise InvalidInput(f"a multiclass image has exactly one tag; got {len(tags)}: {', '.join(tags)}")
        self.projects.require_tags(project["id"], tags)
        return tags

    @staticmethod
    def _label_fields(project_type: str, tags: list[str], regions: list[dict[str, Any]],
                      revision: int = 1) -> dict[str, Any]:
        labeled = len(tags) == 1 if project_type == MULTICLASS else True
        return {"tags": tags, "regions": regions, "labeled": labeled, "label_revision": revision,
                # Labels given by anyone resolve the model's suggestion for the image.
                "suggestion": None,
                "updated_at": utc_now()}

    def _relabel(self, project_id: str, image_id: str, project_type: str, tags: list[str],
                 regions: list[dict[str, Any]], if_match: str | None) -> Document:
        """Write an image's labels, counting up its `label_revision` (what a model's lineage records)."""
        while True:
            current = self.get(project_id, image_id)
            fields = self._label_fields(project_type, tags, regions, current.data.get("label_revision", 0) + 1)
            try:
                return self.documents.patch(IMAGES, image_id, partition_key=project_id, set_fields=fields,
                                            if_match=if_match or current.etag)
            except PreconditionFailedError:
                if if_match:
                    raise
                # Relabeled concurrently: count on from that revision.

    # -- upload --------------------------------------------------------------------
    def upload(
        self,
        project_id: str,
        files: Sequence[tuple[str, bytes]],
        *,
        tags: Sequence[str] = (),
        split: str | None = None,
        change: LabelChange | None = None,
    ) -> list[UploadOutcome]:
        project = self.projects.get(project_id)
        if not files:
            raise InvalidInput("no files in the upload; send them as multipart form field 'files'")
        if len(files) > MAX_FILES_PER_UPLOAD:
            raise InvalidInput(f"at most {MAX_FILES_PER_UPLOAD} files per upload; got {len(files)}")
        labels = self._check_tags(project, tags) if tags else []
        outcomes = [self._upload_one(project, name, data, labels, split) for name, data in files]
        if labels:
            for outcome in outcomes:
                if outcome.status == "created" and outcome.image is not None:
                    self._record(project_id, outcome.image["id"], change or LabelChange(source="upload"),
                                 None, outcome.image)
                    settled = self._settle(project_id, project["type"],
                                           self.documents.get(IMAGES, outcome.image["id"], partition_key=project_id),
                                           change or LabelChange(source="upload"))
                    outcome.image = public_image(settled)
        return outcomes

    def _record(self, project_id: str, image_id: str, change: LabelChange | None,
                previous: dict[str, Any] | None, current: dict[str, Any]) -> None:
        if self.history is not None:
            self.history.record(project_id, image_id, change or LabelChange(), previous=previous, current=current)

    def _upload_one(self, project: dict[str, Any], filename: str, data: bytes, tags: list[str],
                    split: str | None) -> UploadOutcome:
        project_id = project["id"]
        if len(data) > self.max_bytes:
            return UploadOutcome(filename, "rejected", problem=TooLarge(
                f"{len(data):,} bytes is over the {self.max_bytes:,}-byte limit per image"))
        try:
            facts = inspect_image(data, max_pixels=self.max_pixels)
        except InvalidImageError as exc:
            return UploadOutcome(filename, "rejected", problem=exc)
        image_id = facts.sha256
        try:
            existing = self.documents.get(IMAGES, image_id, partition_key=project_id)
            return UploadOutcome(filename, "duplicate", image=public_image(existing))
        except DocumentNotFoundError:
            pass
        key = image_blob_key(project_id, image_id)
        self.blobs.put(key, data, content_type=facts.content_type)
        now = utc_now()
        document = {
            "id": image_id,
            "project_id": project_id,
            "filename": filename[:255],
            "content_type": facts.content_type,
            "width": facts.width,
            "height": facts.height,
            "size": len(data),
            "split": split,
            "created_at": now,
            # Tags given with the upload label the image; without them it waits to be labeled.
            **(self._label_fields(project["type"], tags, []) if tags
               else {"tags": [], "regions": [], "labeled": False, "label_revision": 0, "updated_at": now}),
        }
        try:
            stored = self.documents.create(IMAGES, document, partition_key=project_id)
        except DocumentExistsError:
            # A concurrent upload of the same bytes won; the blob is now that image's.
            winner = self.documents.get(IMAGES, image_id, partition_key=project_id)
            return UploadOutcome(filename, "duplicate", image=public_image(winner))
        except Exception:
            self._remove_orphan_blob(project_id, image_id)
            raise
        # A delete of the same bytes may have removed the blob between our put and our create.
        if not self.blobs.exists(key):
            self.blobs.put(key, data, content_type=facts.content_type)
        return UploadOutcome(filename, "created", image=public_image(stored))

    def _remove_orphan_blob(self, project_id: str, image_id: str) -> None:
        try:
            self.documents.get(IMAGES, image_id, partition_key=project_id)
        except DocumentNotFoundError:
            self.blobs.delete(image_blob_key(project_id, image_id))
        except Exception:  # the store is down: keeping a stray blob beats deleting one in use
            log.warning("could not check image %s/%s; its blob is kept", project_id, image_id)

    # -- reading -------------------------------------------------------------------
    def get(self, project_id: str, image_id: str) -> Document:
        self.projects.get(project_id)
        try:
            return self.documents.get(IMAGES, image_id, partition_key=project_id)
        except DocumentNotFoundError:
            raise NotFound(f"image {image_id!r} does not exist in project {project_id!r}") from None

    def content(self, project_id: str, image_id: str) -> tuple[Iterator[bytes], str, int]:
        doc = self.get(project_id, image_id)
        key = image_blob_key(project_id, image_id)
        return self.blobs.stream(key), doc.data["content_type"], doc.data["size"]

    def list(
        self,
        project_id: str,
        *,
        labeled: bool | None = None,
        tag: str | None = None,
        split: str | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> tuple[list[Document], str | None]:
        self.projects.get(project_id)
        filters = []
        if labeled is not None:
            filters.append(Filter("labeled", "eq", labeled))
        if tag is not None:
            filters.append(Filter("tags", "contains", tag))
        if split is not None:
            filters.append(Filter("split", "eq", None if split == "none" else split))
        query = Query(partition_key=project_id, filters=filters, order_by="created_at")
        page = self.documents.query(IMAGES, query, limit=limit, continuation=continuation)
        return page.items, page.continuation

    def stats(self, project_id: str) -> dict[str, Any]:
        self.projects.get(project_id)
        tag_counts = {tag["name"]: 0 for tag in self.projects.list_tags(project_id)}
        split_counts: dict[str, int] = {}
        image_count = labeled_count = 0
        for doc in self.documents.query_all(IMAGES, Query(partition_key=project_id, order_by="created_at")):
            image_count += 1
            split_name = doc.data.get("split") or "none"
            split_counts[split_name] = split_counts.get(split_name, 0) + 1
            if doc.data.get("labeled"):
                labeled_count += 1
                for name in doc.data.get("tags", []):
                    tag_counts[name] = tag_counts.get(name, 0) + 1
        return {"image_count": image_count, "labeled_count": labeled_count, "tag_counts": tag_counts,
                "split_counts": split_counts}

    # -- updates -------------------------------------------------------------------
    def set_tags(self, project_id: str, image_id: str, tags: Sequence[str], *, if_match: str | None,
                 change: LabelChange | None = None) -> Document:
        project = self.projects.get(project_id)
        labels = self._check_tags(project, tags)
        before = self.get(project_id, image_id)
        updated = self._relabel(project_id, image_id, project["type"], labels, [], if_match)
        self._record(project_id, image_id, change, before.data, updated.data)
        return self._settle(project_id, project["type"], updated, change)

    def set_regions(self, project_id: str, image_id: str, regions: Sequence[dict[str, Any]], *,
                    if_match: str | None, change: LabelChange | None = None) -> Document:
        project = self.projects.get(project_id)
        if project["type"] != DETECTION:
            raise InvalidInput(f"project {project_id!r} is {project['type']}: label its images with tags, "
                             "not regions")
        tags = sorted({region["tag"] for region in regions})
        self.projects.require_tags(project_id, tags)
        before = self.get(project_id, image_id)
        updated = self._relabel(project_id, image_id, DETECTION, tags, [dict(region) for region in regions],
                                if_match)
        self._record(project_id, image_id, change, before.data, updated.data)
        return self._settle(project_id, DETECTION, updated, change)

    def _settle(self, project_id: str, project_type: str, doc: Document, change: LabelChange | None) -> Document:
        """The image, relabeled where its labels name a tag being renamed or deleted meanwhile (see the
        module docstring); the label history records that too, as a bulk change."""
        for _ in range(LABEL_RETRIES):
            named = [*doc.data.get("tags", []), *(r["tag"] for r in doc.data.get("regions") or [])]
            retired = self.projects.retired(project_id, named) if named else {}
            if not retired:
                return doc
            wanted = labels_changed(doc.data, lambda tag, moved=retired: moved.get(tag, tag))
            regions = wanted.get("regions", [])
            tags = sorted({r["tag"] for r in regions}) if project_type == DETECTION else wanted["tags"]
            fields = self._label_fields(project_type, tags, regions, doc.data.get("label_revision", 0) + 1)
            try:
                settled = self.documents.patch(IMAGES, doc.id, partition_key=project_id, set_fields=fields,
                                               if_match=doc.etag)
            except PreconditionFailedError:
                doc = self.get(project_id, doc.id)
                continue
            who = change.who if change is not None else LabelChange().who
            self._record(project_id, doc.id, LabelChange(who=who, source="bulk"), doc.data, settled.data)
            doc = settled
        raise Conflict(f"image {doc.id} kept changing while its tags were renamed; read it again")

    def set_split(self, project_id: str, image_id: str, split: str | None, *, if_match: str | None) -> Document:
        self.get(project_id, image_id)
        return self.documents.patch(IMAGES, image_id, partition_key=project_id,
                                    set_fields={"split": split, "updated_at": utc_now()}, if_match=if_match)

    def delete(self, project_id: str, image_id: str, *, if_match: str | None) -> None:
        doc = self.get(project_id, image_id)
        key = image_blob_key(project_id, image_id)
        # The document goes first: a blob without a document is invisible, the reverse is a broken image.
        held = self.blobs.get(key) if self.blobs.exists(key) else None
        self.documents.delete(IMAGES, image_id, partition_key=project_id, if_match=if_match)
        self.blobs.delete(key)
        self.blobs.delete(thumbnail_blob_key(project_id, image_id))
        # An upload of the same bytes may have created the document again after ours went, and
        # checked for its blob before we removed it: each side checks after its last write, so
        # one of them always sees the other and puts the bytes back.
        try:
            self.documents.get(IMAGES, image_id, partition_key=project_id)
        except DocumentNotFoundError:
            return
        if held is not None:
            self.blobs.put(key, held, content_type=doc.data["content_type"])
