"""Images of a project: upload with de-duplication, labels, listing.

An image's id is the SHA-256 of its bytes, so the same photo uploaded twice is one
image. Its bytes live in the BlobStore at `images/<project>/<sha256>` (`visiondock.blob_keys`), its metadata
and labels in the `images` collection, partition `<project>`.

New images go in by batches of up to MAX_BATCH_DOCUMENTS (`add`): one query finds those the
project has already (by content hash), the new ones' bytes go up in parallel, then their label
history entries in one batch write and their documents, labels included, in another. Order of
writes: blobs, history, documents; the document is what makes an image exist, so a document
never points at missing bytes nor lacks its history entry. If a write fails, what the batch
wrote is removed again (history entries, and blobs no document owns), so each image is either
all there or not at all. A delete racing an upload of the same bytes: after its last write each
side checks the other's (the upload its blob, the delete the document) and puts the bytes back
when needed.

Labels never name a tag that is gone: after writing an image's labels the library reads the tags
they name, and where one is being renamed or deleted (or is gone) it relabels the image the way the
rename or delete does. A rename marks the tag before it looks for images carrying it, so of the two
at least one sees the other (`ProjectCatalog.retire_tag`, `curation.py`).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from visiondock.blob_keys import IMAGE_PREFIX, image_blob_key, image_of_blob, thumbnail_blob_key
from visiondock.errors import Conflict, DomainError, InvalidInput, NotFound, TooLarge
from visiondock.fsck import Pairing
from visiondock.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageFacts, inspect_image
from visiondock.storage import (
    MAX_BATCH_DOCUMENTS,
    BlobStore,
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    PreconditionFailedError,
    Query,
)
from visiondock.timeutil import utc_now, utc_now_series

from .history import LabelChange, LabelHistory
from .project import Labels, Project, ProjectRef
from .projects import ProjectCatalog

IMAGES = "images"
MAX_FILES_PER_UPLOAD = 256
# One upload request, all files together; larger imports are split into several requests.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
# Blob writes of new images in flight at once, in all of this process's uploads together.
BLOB_WRITERS = 8

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")


# For `visiondock fsck`: an image document owns its bytes; without them it is worthless.
IMAGE_BLOBS = Pairing("images", IMAGES, IMAGE_PREFIX, lambda doc: image_blob_key(doc.partition_key, doc.id),
                      image_of_blob)


def public_image(doc: Document) -> dict[str, Any]:
    return {**doc.data, "etag": doc.etag}


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


@dataclass(frozen=True)
class CheckedImage:
    """Bytes that passed `ImageLibrary.check`: an image within the limits, and what it is."""

    filename: str
    data: bytes
    facts: ImageFacts

    @property
    def id(self) -> str:
        return self.facts.sha256


@dataclass(frozen=True)
class NewImage:
    """An image to add and the labels it comes with; None leaves it unlabeled."""

    image: CheckedImage
    labels: Labels | None = None
    split: str | None = None


# One pool for the process: concurrent uploads share BLOB_WRITERS connections (the Azure SDK keeps 10 per host).
_blob_writers = ThreadPoolExecutor(max_workers=BLOB_WRITERS, thread_name_prefix="blob-writer")


def _in_parallel(work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """`work` on each item, several at once; every call has ended when the first error is raised."""
    if len(items) <= 1:
        return [work(item) for item in items]
    futures = [_blob_writers.submit(work, item) for item in items]
    wait(futures)
    return [future.result() for future in futures]


class ImageLibrary:
    """The project images: the one writer of the `images` collection and of the images' blobs.

    Its methods take the `Project` a request read (or its id, to be read here): a request reads its
    project once, whatever it goes through."""

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
    @staticmethod
    def _label_fields(project: Project, labels: Labels, revision: int = 1,
                      labeled: bool | None = None) -> dict[str, Any]:
        return {"tags": labels.tags, "regions": labels.regions,
                "labeled": project.is_labeled(labels.tags) if labeled is None else labeled,
                "label_revision": revision,
                # Labels given by anyone resolve the model's suggestion for the image.
                "suggestion": None,
                "updated_at": utc_now()}

    def _relabel(self, project: Project, image_id: str, labels: Labels, if_match: str | None,
                 labeled: bool | None = None) -> Document:
        """Write an image's labels, counting up its `label_revision` (what a model's lineage records)."""
        while True:
            current = self.get(project, image_id)
            fields = self._label_fields(project, labels, current.data.get("label_revision", 0) + 1, labeled)
            try:
                return self.documents.patch(IMAGES, image_id, partition_key=project.id, set_fields=fields,
                                            if_match=if_match or current.etag)
            except PreconditionFailedError:
                if if_match:
                    raise
                # Relabeled concurrently: count on from that revision.

    # -- upload --------------------------------------------------------------------
    def upload(
        self,
        project: ProjectRef,
        files: Sequence[tuple[str, bytes]],
        *,
        tags: Sequence[str] = (),
        split: str | None = None,
        change: LabelChange | None = None,
    ) -> list[UploadOutcome]:
        project = self.projects.resolve(project)
        if not files:
            raise InvalidInput("no files in the upload; send them as multipart form field 'files'")
        if len(files) > MAX_FILES_PER_UPLOAD:
            raise InvalidInput(f"at most {MAX_FILES_PER_UPLOAD} files per upload; got {len(files)}")
        labels = project.tag_labels(tags) if tags else None
        if labels is not None:
            self.projects.require_tags(project.id, labels.tags)
        outcomes: list[UploadOutcome] = []
        additions: list[NewImage] = []
        places: list[int] = []
        for filename, data in files:
            try:
                additions.append(NewImage(self.check(filename, data), labels, split))
            except DomainError as exc:
                outcomes.append(UploadOutcome(filename, "rejected", problem=exc))
                continue
            places.append(len(outcomes))
            outcomes.append(UploadOutcome(filename, "pending"))
        for place, outcome in zip(places, self.add(project, additions, change=change), strict=True):
            outcomes[place] = outcome
        if labels:
            # A tag renamed or deleted while these were written: relabel them as the rename does.
            for outcome in outcomes:
                if outcome.status == "created" and outcome.image is not None:
                    stored = self.documents.get(IMAGES, outcome.image["id"], partition_key=project.id)
                    settled = self._settle(project, stored, change or LabelChange(source="upload"))
                    outcome.image = public_image(settled)
        return outcomes

    def _record(self, project_id: str, image_id: str, change: LabelChange | None,
                previous: dict[str, Any] | None, current: dict[str, Any]) -> None:
        if self.history is not None:
            self.history.record(project_id, image_id, change or LabelChange(), previous=previous, current=current)

    def check(self, filename: str, data: bytes) -> CheckedImage:
        """The image in `data`, if it is one within the limits (TooLarge, InvalidImageError otherwise)."""
        if len(data) > self.max_bytes:
            raise TooLarge(f"{len(data):,} bytes is over the {self.max_bytes:,}-byte limit per image")
        return CheckedImage(filename, data, inspect_image(data, max_pixels=self.max_pixels))

    def add(self, project: Project, additions: Sequence[NewImage], *,
            change: LabelChange | None = None) -> list[UploadOutcome]:
        """Add images to the project, each with the labels it comes with (recorded in the label history
        as `change`, by default an upload): `created`, or `duplicate` of the image the project has with
        the same bytes (its labels untouched). Written by batches (see the module's docstring); when
        this raises, the images of the failing batch are not stored at all."""
        self._check_labels(project, additions)
        change = change or LabelChange(source="upload")
        outcomes: list[UploadOutcome] = []
        for start in range(0, len(additions), MAX_BATCH_DOCUMENTS):
            outcomes += self._add_batch(project, additions[start:start + MAX_BATCH_DOCUMENTS], change)
        return outcomes

    def _check_labels(self, project: Project, additions: Sequence[NewImage]) -> None:
        """The labels new images come with follow the project's rules."""
        names: set[str] = set()
        for addition in additions:
            if addition.labels is not None:
                names.update(project.check(addition.labels).tags)
        self.projects.require_tags(project.id, names)

    def _add_batch(self, project: Project, additions: Sequence[NewImage],
                   change: LabelChange) -> list[UploadOutcome]:
        first: dict[str, NewImage] = {}  # the same bytes twice: the first is added, the second is its duplicate
        for addition in additions:
            first.setdefault(addition.image.id, addition)
        stored = self._existing(project.id, list(first))
        new = {image_id: addition for image_id, addition in first.items() if image_id not in stored}
        created: set[str] = set()
        if new:
            try:
                documents, winners = self._store_new(project, new, change)
            except BaseException:
                self._remove_orphan_blobs(project.id, list(new))
                raise
            stored.update(documents | winners)
            created.update(documents)
        outcomes = []
        for addition in additions:
            image_id = addition.image.id
            fresh = image_id in created and first[image_id] is addition
            outcomes.append(UploadOutcome(addition.image.filename, "created" if fresh else "duplicate",
                                          image=public_image(stored[image_id])))
        return outcomes

    def _store_new(self, project: Project, new: dict[str, NewImage],
                   change: LabelChange) -> tuple[dict[str, Document], dict[str, Document]]:
        """Blobs, history entries, then documents of images the project did not have: the documents
        created, and those that concurrent uploads of the same bytes created first."""
        project_id = project.id
        _in_parallel(lambda addition: self.blobs.put(image_blob_key(project_id, addition.image.id),
                                                     addition.image.data,
                                                     content_type=addition.image.facts.content_type),
                     list(new.values()))
        winners: dict[str, Document] = {}
        while new:
            # In the order given: images are listed by creation time.
            bodies = [self._new_document(project, addition, now)
                      for addition, now in zip(new.values(), utc_now_series(len(new)), strict=True)]
            entries = self._history_entries(project_id, bodies, change)
            try:
                created = self._create_documents(project_id, bodies)
            except DocumentExistsError:
                # Concurrent uploads of some of these bytes won: theirs are duplicates now, the rest go again.
                self._withdraw_history(project_id, entries, keep=set())
                taken = self._existing(project_id, list(new))
                winners.update(taken)
                new = {image_id: addition for image_id, addition in new.items() if image_id not in taken}
                continue
            except BaseException:
                self._withdraw_history(project_id, entries, keep=self._written_by(project_id, bodies))
                raise
            # A delete of the same bytes may have removed a blob between our put and our create.
            _in_parallel(self._restore_blob(project_id), list(new.values()))
            return {doc.id: doc for doc in created}, winners
        return {}, winners

    def _new_document(self, project: Project, addition: NewImage, now: str) -> dict[str, Any]:
        image = addition.image
        labels = (self._label_fields(project, addition.labels) if addition.labels is not None
                  else {"tags": [], "regions": [], "labeled": False, "label_revision": 0, "updated_at": now})
        return {"id": image.id, "project_id": project.id, "filename": image.filename[:255],
                "content_type": image.facts.content_type, "width": image.facts.width, "height": image.facts.height,
                "size": len(image.data), "split": addition.split, "created_at": now, **labels, "updated_at": now}

    def _history_entries(self, project_id: str, bodies: list[dict[str, Any]],
                         change: LabelChange) -> dict[str, dict[str, Any]]:
        """The history entries of the labeled ones among new images, written; by image id."""
        if self.history is None:
            return {}
        entries = {body["id"]: self.history.entry(body["id"], change, previous=None, current=body)
                   for body in bodies if body["label_revision"]}
        self.history.record_many(project_id, list(entries.values()))
        return entries

    def _withdraw_history(self, project_id: str, entries: dict[str, dict[str, Any]], *, keep: set[str]) -> None:
        if self.history is None:
            return
        try:
            self.history.withdraw(project_id, [entry["id"] for image_id, entry in entries.items()
                                               if image_id not in keep])
        except Exception:
            log.exception("could not withdraw the history entries of images in %s that were not stored", project_id)

    def _written_by(self, project_id: str, bodies: list[dict[str, Any]]) -> set[str]:
        """Which of these documents are stored as written, after a write whose outcome is unknown."""
        try:
            stored = self._existing(project_id, [body["id"] for body in bodies])
        except Exception:
            return set()
        return {body["id"] for body in bodies if body["id"] in stored
                and stored[body["id"]].data.get("created_at") == body["created_at"]}

    def _create_documents(self, project_id: str, bodies: list[dict[str, Any]]) -> list[Document]:
        if len(bodies) == 1:
            return [self.documents.create(IMAGES, bodies[0], partition_key=project_id)]
        return self.documents.create_many(IMAGES, bodies, partition_key=project_id)

    def _existing(self, project_id: str, image_ids: list[str]) -> dict[str, Document]:
        """The project's images among these ids (at most MAX_BATCH_DOCUMENTS): one query, not a read each."""
        if not image_ids:
            return {}
        query = Query(partition_key=project_id, filters=[Filter("id", "in", image_ids)])
        return {doc.id: doc for doc in self.documents.query(IMAGES, query, limit=len(image_ids)).items}

    def _restore_blob(self, project_id: str) -> Callable[[NewImage], None]:
        def restore(addition: NewImage) -> None:
            key = image_blob_key(project_id, addition.image.id)
            if not self.blobs.exists(key):
                self.blobs.put(key, addition.image.data, content_type=addition.image.facts.content_type)
        return restore

    def _remove_orphan_blobs(self, project_id: str, image_ids: list[str]) -> None:
        """Delete the blobs of these images unless a document owns them (another upload's)."""
        try:
            owned = self._existing(project_id, image_ids)
        except Exception:  # the store is down: keeping stray blobs beats deleting ones in use
            log.warning("could not check %d images of %s; their blobs are kept", len(image_ids), project_id)
            return
        for image_id in image_ids:
            if image_id not in owned:
                try:
                    self.blobs.delete(image_blob_key(project_id, image_id))
                except Exception:
                    log.warning("could not remove the blob of image %s/%s, which was not stored", project_id,
                                image_id)

    # -- reading -------------------------------------------------------------------
    def get(self, project: ProjectRef, image_id: str) -> Document:
        project_id = self.projects.resolve(project).id
        try:
            return self.documents.get(IMAGES, image_id, partition_key=project_id)
        except DocumentNotFoundError:
            raise NotFound(f"image {image_id!r} does not exist in project {project_id!r}") from None

    def content(self, project: ProjectRef, image_id: str) -> tuple[Iterator[bytes], str, int]:
        project = self.projects.resolve(project)
        doc = self.get(project, image_id)
        return self.blobs.stream(image_blob_key(project.id, image_id)), doc.data["content_type"], doc.data["size"]

    def list(
        self,
        project: ProjectRef,
        *,
        labeled: bool | None = None,
        tag: str | None = None,
        split: str | None = None,
        limit: int = 100,
        continuation: str | None = None,
    ) -> tuple[list[Document], str | None]:
        project_id = self.projects.resolve(project).id
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

    def stats(self, project: ProjectRef) -> dict[str, Any]:
        project = self.projects.resolve(project)
        tag_counts = {tag["name"]: 0 for tag in self.projects.list_tags(project)}
        split_counts: dict[str, int] = {}
        image_count = labeled_count = 0
        for doc in self.documents.query_all(IMAGES, Query(partition_key=project.id, order_by="created_at")):
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
    def set_tags(self, project: ProjectRef, image_id: str, tags: Sequence[str], *, if_match: str | None,
                 change: LabelChange | None = None) -> Document:
        project = self.projects.resolve(project)
        return self.set_labels(project, image_id, project.tag_labels(tags), if_match=if_match, change=change)

    def set_regions(self, project: ProjectRef, image_id: str, regions: Sequence[dict[str, Any]], *,
                    if_match: str | None, change: LabelChange | None = None) -> Document:
        project = self.projects.resolve(project)
        return self.set_labels(project, image_id, project.box_labels(regions), if_match=if_match, change=change)

    def set_labels(self, project: Project, image_id: str, labels: Labels, *, if_match: str | None,
                   change: LabelChange | None = None) -> Document:
        """Give an image these labels (tags, or boxes in a detection project), recorded in the label history
        as `change`; over the image as it was at `if_match` only, when given."""
        labels = project.check(labels)
        self.projects.require_tags(project.id, labels.tags)
        before = self.get(project, image_id)
        updated = self._relabel(project, image_id, labels, if_match)
        self._record(project.id, image_id, change, before.data, updated.data)
        return self._settle(project, updated, change)

    def _settle(self, project: Project, doc: Document, change: LabelChange | None) -> Document:
        """The image, relabeled where its labels name a tag being renamed or deleted meanwhile (see the
        module docstring); the label history records that too, as a bulk change."""
        for _ in range(LABEL_RETRIES):
            labels = Labels.of(doc.data)
            named = [*labels.tags, *(r["tag"] for r in labels.regions)]
            retired = self.projects.retired(project.id, named) if named else {}
            if not retired:
                return doc
            def new_name(tag: str, moved: dict[str, str | None] = retired) -> str | None:
                return moved.get(tag, tag)

            wanted = project.renamed(labels, new_name)
            fields = self._label_fields(project, wanted, doc.data.get("label_revision", 0) + 1)
            try:
                settled = self.documents.patch(IMAGES, doc.id, partition_key=project.id, set_fields=fields,
                                               if_match=doc.etag)
            except PreconditionFailedError:
                doc = self.get(project, doc.id)
                continue
            who = change.who if change is not None else LabelChange().who
            self._record(project.id, doc.id, LabelChange(who=who, source="bulk"), doc.data, settled.data)
            doc = settled
        raise Conflict(f"image {doc.id} kept changing while its tags were renamed; read it again")

    def restore_labels(self, project: ProjectRef, image_id: str, previous: dict[str, Any] | None, *,
                       if_match: str | None, change: LabelChange | None = None) -> Document:
        """Put back the labels an image had (an undo): its tags, boxes and whether it was labeled at all
        (None: never labeled). Tags are not checked: they were the image's before."""
        project = self.projects.resolve(project)
        before = self.get(project, image_id)
        updated = self._relabel(project, image_id, Labels.of(previous or {}), if_match,
                                labeled=bool((previous or {}).get("labeled")))
        self._record(project.id, image_id, change, before.data, updated.data)
        return updated

    def set_split(self, project: ProjectRef, image_id: str, split: str | None, *, if_match: str | None) -> Document:
        project = self.projects.resolve(project)
        self.get(project, image_id)
        return self.documents.patch(IMAGES, image_id, partition_key=project.id,
                                    set_fields={"split": split, "updated_at": utc_now()}, if_match=if_match)

    def set_suggestion(self, project: ProjectRef, image_id: str, suggestion: dict[str, Any] | None) -> Document:
        """Keep a model's suggestion on the image (None drops it). No etag: a suggestion sits beside the
        labels and never changes them."""
        project_id = self.projects.resolve(project).id
        try:
            return self.documents.patch(IMAGES, image_id, partition_key=project_id,
                                        set_fields={"suggestion": suggestion})
        except DocumentNotFoundError:
            raise NotFound(f"image {image_id!r} does not exist in project {project_id!r}") from None

    def with_suggestion(self, project: ProjectRef, *, limit: int,
                        continuation: str | None) -> tuple[builtins.list[Document], str | None]:
        """Images with a suggestion nobody acted on yet, oldest first."""
        project_id = self.projects.resolve(project).id
        query = Query(partition_key=project_id, filters=[Filter("suggestion.model", "ne", None)],
                      order_by="created_at")
        page = self.documents.query(IMAGES, query, limit=limit, continuation=continuation)
        return page.items, page.continuation

    def image_ids(self, project: ProjectRef) -> builtins.list[str]:
        """The ids of every image of the project."""
        query = Query(partition_key=self.projects.resolve(project).id)
        return [doc.id for doc in self.documents.query_all(IMAGES, query)]

    def delete_all(self, project: Project, image_ids: Sequence[str]) -> None:
        """Delete images of a project that is being deleted, each document before its bytes (a blob without
        a document is invisible); an image gone meanwhile is skipped. Its thumbnails go with the project's
        folders."""
        for image_id in image_ids:
            with suppress(DocumentNotFoundError):
                self.documents.delete(IMAGES, image_id, partition_key=project.id)
            self.blobs.delete(image_blob_key(project.id, image_id))

    def delete(self, project: ProjectRef, image_id: str, *, if_match: str | None) -> None:
        project = self.projects.resolve(project)
        project_id = project.id
        doc = self.get(project, image_id)
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
