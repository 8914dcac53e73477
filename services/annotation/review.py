"""The review queue: predictions the scoring service captured, waiting for a person.

The scoring service hands over a sample of what it scored (the image and the
prediction document). Each lands here as a review item of the model's project,
status `pending`; the queue lists them most uncertain first, where a person's answer
teaches the model most. Accepting one makes it a labeled image of the project (the
reviewer's tags or boxes, or the prediction's when the reviewer sends none); rejecting
marks it rejected.

Storage: documents in the `review_items` collection, partition `<project>`, id = the
capture id (so a repeated hand-over is one item); the bytes at `review/<project>/<id>`
in the BlobStore (`visiondock.captures`: the one copy of a captured image), written before the
document (a document never points at nothing). Retention (`purge`) takes the items, their
images and the captures' summaries.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from visiondock.blob_keys import REVIEW_PREFIX, review_blob_key, review_item_of_blob
from visiondock.captures import purge_summaries
from visiondock.errors import Conflict, InvalidInput, NotFound, Outdated, TooLarge
from visiondock.fsck import Pairing
from visiondock.images import DEFAULT_MAX_PIXELS, inspect_image
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

from .history import LabelChange
from .images import ImageLibrary, public_image
from .project import Labels, Project, ProjectRef, proposed_labels
from .projects import ProjectCatalog

REVIEW_ITEMS = "review_items"
STATUSES = ("pending", "accepted", "rejected")
_ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# How long an accept holds an item; past it, a claim left by a crashed request is void.
CLAIM_TTL = timedelta(minutes=5)

log = logging.getLogger(__name__)

REVIEW_BLOBS = Pairing("review items", REVIEW_ITEMS, REVIEW_PREFIX,
                       lambda doc: review_blob_key(doc.partition_key, doc.id), review_item_of_blob)


def _parse_time(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _has_labels(image: dict[str, Any]) -> bool:
    return bool(image.get("labeled") or image.get("tags") or image.get("regions"))


def public_item(doc: Document) -> dict[str, Any]:
    return {**doc.data, "etag": doc.etag}


class ReviewQueue:
    def __init__(self, documents: DocumentStore, blobs: BlobStore, projects: ProjectCatalog,
                 library: ImageLibrary, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.documents = documents
        self.blobs = blobs
        self.projects = projects
        self.library = library
        self.max_pixels = max_pixels

    # -- hand-over from the scoring service ----------------------------------------
    def submit(self, project: ProjectRef, item_id: str, data: bytes, capture: dict[str, Any], *,
               filename: str) -> tuple[dict[str, Any], bool]:
        """Store a captured prediction as a pending item; (item, created). A repeat returns the first."""
        project = self.projects.resolve(project)
        project_id = project.id
        if not _ITEM_ID.fullmatch(item_id):
            raise InvalidInput("a review item id is 1 to 128 letters, digits, '-' and '_'")
        try:
            return public_item(self.documents.get(REVIEW_ITEMS, item_id, partition_key=project_id)), False
        except DocumentNotFoundError:
            pass
        if len(data) > self.library.max_bytes:
            raise TooLarge(f"image is over the {self.library.max_bytes:,}-byte limit")
        facts = inspect_image(data, max_pixels=self.max_pixels)
        key = review_blob_key(project_id, item_id)
        self.blobs.put(key, data, content_type=facts.content_type)
        now = utc_now()
        document = {
            **capture,
            "id": item_id,
            "project_id": project_id,
            "status": "pending",
            "filename": filename[:255],
            "content_type": facts.content_type,
            "width": facts.width,
            "height": facts.height,
            "size": len(data),
            "sha256": facts.sha256,
            "suggested": proposed_labels(project.type, capture.get("prediction") or {}).as_dict(),
            "created_at": now,
            "updated_at": now,
        }
        try:
            stored = self.documents.create(REVIEW_ITEMS, document, partition_key=project_id)
        except DocumentExistsError:  # a concurrent hand-over of the same capture won
            return public_item(self.documents.get(REVIEW_ITEMS, item_id, partition_key=project_id)), False
        except Exception:
            self._remove_blob(key)
            raise
        return public_item(stored), True

    def _remove_blob(self, key: str) -> None:
        try:
            self.blobs.delete(key)
        except Exception:  # keeping a stray blob beats hiding the original error
            log.warning("could not remove %s after a failed hand-over", key)

    # -- reading -------------------------------------------------------------------
    def get(self, project: ProjectRef, item_id: str) -> Document:
        project_id = self.projects.resolve(project).id
        try:
            return self.documents.get(REVIEW_ITEMS, item_id, partition_key=project_id)
        except DocumentNotFoundError:
            raise NotFound(f"review item {item_id!r} does not exist in project {project_id!r}") from None

    def content(self, project: ProjectRef, item_id: str) -> tuple[Iterator[bytes], str, int]:
        doc = self.get(project, item_id)
        return (self.blobs.stream(review_blob_key(doc.partition_key, item_id)), doc.data["content_type"],
                doc.data["size"])

    def list(self, project: ProjectRef, *, status: str | None = "pending", limit: int = 100,
             continuation: str | None = None) -> tuple[builtins.list[Document], str | None]:
        """Items with `status` (None: all), most uncertain first."""
        project_id = self.projects.resolve(project).id
        filters = [Filter("status", "eq", status)] if status else []
        query = Query(partition_key=project_id, filters=filters, order_by="uncertainty", descending=True)
        page = self.documents.query(REVIEW_ITEMS, query, limit=limit, continuation=continuation)
        return page.items, page.continuation

    # -- decisions -----------------------------------------------------------------
    def _pending(self, project: Project, item_id: str, if_match: str | None) -> Document:
        doc = self.get(project, item_id)
        if if_match is not None and if_match != doc.etag:
            raise Outdated(f"review item {item_id!r} changed since you read it; read it again")
        if doc.data["status"] != "pending":
            raise Conflict(f"review item {item_id!r} was already {doc.data['status']}")
        claimed = doc.data.get("claimed_at")
        if claimed and datetime.now(UTC) - _parse_time(claimed) < CLAIM_TTL:
            raise Conflict(f"review item {item_id!r} is being accepted by {doc.data.get('claimed_by') or 'someone'}")
        return doc

    def _claim(self, doc: Document, reviewer: str) -> Document:
        """Take the item by its etag before touching any image: of two reviewers accepting at once,
        one claims it and the other gets 409 before anything is labeled. A claim left by a crashed
        request expires after CLAIM_TTL."""
        try:
            return self.documents.patch(REVIEW_ITEMS, doc.id, partition_key=doc.partition_key,
                                        set_fields={"claimed_at": utc_now(), "claimed_by": reviewer},
                                        if_match=doc.etag)
        except PreconditionFailedError:
            raise Conflict(f"review item {doc.id!r} was taken by someone else meanwhile") from None

    def _decide(self, doc: Document, fields: dict[str, Any]) -> Document:
        try:
            return self.documents.patch(REVIEW_ITEMS, doc.id, partition_key=doc.partition_key,
                                        set_fields={**fields, "reviewed_at": utc_now(), "updated_at": utc_now()},
                                        remove_fields=["claimed_at", "claimed_by"], if_match=doc.etag)
        except PreconditionFailedError:
            raise Conflict(f"review item {doc.id!r} was decided by someone else meanwhile") from None

    def _release(self, doc: Document) -> None:
        try:
            self.documents.patch(REVIEW_ITEMS, doc.id, partition_key=doc.partition_key,
                                 remove_fields=["claimed_at", "claimed_by"], if_match=doc.etag)
        except Exception:  # the claim expires by itself
            log.warning("could not release the claim on review item %s", doc.id)

    def accept(self, project: ProjectRef, item_id: str, *, tags: Sequence[str] | None = None,
               regions: Sequence[dict[str, Any]] | None = None,
               if_match: str | None = None, who: str | None = None) -> dict[str, Any]:
        """Make the item a labeled image of the project; the prediction's labels unless given.

        When the same image is already in the project with labels a person gave, those labels
        stay: the item is accepted as that image, `labels_from: existing`.
        """
        project = self.projects.resolve(project)
        doc = self._pending(project, item_id, if_match)
        chosen = project.given_labels(tags, regions, otherwise=Labels.of(doc.data.get("suggested") or {}))
        if not project.is_labeled(chosen.tags):
            prediction = (doc.data.get("prediction") or {}).get("label")
            raise InvalidInput(f"a multiclass image needs exactly one tag; the prediction ({prediction!r}) "
                               "gives none usable: send the right tag in `tags`")
        self.projects.require_tags(project.id, chosen.tags)
        claimed = self._claim(doc, who or "")
        change = LabelChange(who=who, source="review") if who else LabelChange(source="review")
        try:
            image, labels_from = self._label_image(project, claimed, chosen, change,
                                                   "prediction" if tags is None and regions is None else "reviewer")
        except BaseException:
            self._release(claimed)
            raise
        labels = {"tags": image.data.get("tags", []), "regions": image.data.get("regions", [])}
        decided = self._decide(claimed, {"status": "accepted", "image_id": image.id, "labels": labels,
                                         "labels_from": labels_from})
        return {"item": public_item(decided), "image": public_image(image)}

    def _label_image(self, project: Project, item: Document, labels: Labels, change: LabelChange,
                     labels_from: str) -> tuple[Document, str]:
        data = self.blobs.get(review_blob_key(project.id, item.id))
        outcome = self.library.upload(project, [(item.data.get("filename") or item.id, data)])[0]
        if outcome.problem is not None:
            raise outcome.problem
        assert outcome.image is not None
        image_id, etag = outcome.image["id"], outcome.image["etag"]
        # The prediction never replaces labels the image already has; a reviewer's explicit choice does.
        if outcome.status == "duplicate" and _has_labels(outcome.image) and labels_from == "prediction":
            return self.library.get(project, image_id), "existing"
        try:
            # Only over the image as uploaded: a person labeling it meanwhile wins.
            return self.library.set_labels(project, image_id, labels, if_match=etag, change=change), labels_from
        except PreconditionFailedError:
            return self.library.get(project, image_id), "existing"

    def reopen(self, project: ProjectRef, item_id: str, *, if_match: str | None = None,
               who: str | None = None) -> dict[str, Any]:
        """Take a decision back (a reviewer's undo): the item is pending again, and the image an accept
        labeled gets back the labels it had before, unless someone labeled it since (409: change it in
        the labeler). An accept that kept a person's labels (`existing`) changed no image."""
        project = self.projects.resolve(project)
        doc = self.get(project, item_id)
        if if_match is not None and if_match != doc.etag:
            raise Outdated(f"review item {item_id!r} changed since you read it; read it again")
        status = doc.data["status"]
        if status == "pending":
            raise Conflict(f"review item {item_id!r} is pending: there is no decision to take back",
                           code="not_decided")
        image = None
        if status == "accepted" and doc.data.get("labels_from") != "existing" and doc.data.get("image_id"):
            image = self._restore_image(project, doc, who)
        kept = ("image_id", "labels", "labels_from", "reviewed_at", "reason")
        try:
            reopened = self.documents.patch(REVIEW_ITEMS, doc.id, partition_key=project.id,
                                            set_fields={"status": "pending", "updated_at": utc_now()},
                                            remove_fields=[k for k in kept if k in doc.data], if_match=doc.etag)
        except PreconditionFailedError:
            raise Conflict(f"review item {item_id!r} changed meanwhile; read it again") from None
        return {"item": public_item(reopened), "image": public_image(image) if image is not None else None}

    def _restore_image(self, project: Project, doc: Document, who: str | None) -> Document:
        image_id = doc.data["image_id"]
        image = self.library.get(project, image_id)
        given = doc.data.get("labels") or {}
        if (image.data.get("tags") or [], image.data.get("regions") or []) != \
                (given.get("tags") or [], given.get("regions") or []):
            raise Conflict(f"image {image_id!r} was labeled again after this item was accepted; change its labels "
                           "in the labeler", code="relabeled_since")
        previous: dict[str, Any] | None = None
        if self.library.history is not None:
            entries, _ = self.library.history.list(project.id, image_id, limit=20)
            accepted = next((e for e in entries if e.get("source") == "review"), None)
            previous = accepted.get("previous") if accepted else None
        change = LabelChange(who=who, source="review") if who else LabelChange(source="review")
        return self.library.restore_labels(project, image_id, previous, if_match=image.etag, change=change)

    # -- retention -------------------------------------------------------------------
    def purge(self, *, older_than: datetime, dry_run: bool = False) -> builtins.list[str]:
        """Delete captured items (document, then image) created before `older_than`, in every
        project and whatever their status (an accepted item's image lives on as a project image),
        and the summaries of predictions captured before then. Returns `<project>/<item>` of each
        purged (or, in a dry run, purgeable) item."""
        purge_summaries(self.documents, older_than=older_than, dry_run=dry_run)
        cutoff = older_than.astimezone(UTC).isoformat(timespec="microseconds")
        query = Query(filters=[Filter("created_at", "lt", cutoff)], order_by="created_at")
        purged = []
        for doc in list(self.documents.query_all(REVIEW_ITEMS, query)):
            purged.append(f"{doc.partition_key}/{doc.id}")
            if dry_run:
                continue
            # Document first: a stray blob is invisible (and fsck removes it), a document without its image is not.
            try:
                self.documents.delete(REVIEW_ITEMS, doc.id, partition_key=doc.partition_key)
            except DocumentNotFoundError:
                continue
            self.blobs.delete(review_blob_key(doc.partition_key, doc.id))
        return purged

    def reject(self, project: ProjectRef, item_id: str, *, reason: str = "",
               if_match: str | None = None) -> dict[str, Any]:
        doc = self._pending(self.projects.resolve(project), item_id, if_match)
        return public_item(self._decide(doc, {"status": "rejected", "reason": reason}))
