"""Label history: every change of an image's labels, who made it, when, and from what.

Each change is one document of the `label_history` collection in the project's
partition, written after the image's labels changed: the previous and the new
labels (tags and regions), the source (`person`, `suggestion`, `review`, `upload`, `import`,
`bulk`: bulk changes, tag renames and deletes) and who (the API key's name when the deployment
names its keys, else `api-key`).
Reading an image's history is one partition query ordered by time, newest first.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal

from visiondock.auth import ANONYMOUS_CALLER
from visiondock.storage import DocumentNotFoundError, DocumentStore, Filter, Query
from visiondock.timeutil import utc_now

LABEL_HISTORY = "label_history"
LabelSource = Literal["person", "suggestion", "review", "upload", "import", "bulk"]


@dataclass(frozen=True)
class LabelChange:
    """Who is changing labels, and from what: a person's hand, an accepted suggestion, a review."""

    who: str = ANONYMOUS_CALLER  # the API key's name (`visiondock.web.caller_name`)
    source: LabelSource = "person"


def labels_of(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {"tags": list(data.get("tags") or []), "regions": list(data.get("regions") or []),
            "labeled": bool(data.get("labeled"))}


class LabelHistory:
    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    def record(self, project_id: str, image_id: str, change: LabelChange, *,
               previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
        entry = self.entry(image_id, change, previous=previous, current=current)
        return self.documents.create(LABEL_HISTORY, entry, partition_key=project_id).data

    @staticmethod
    def entry(image_id: str, change: LabelChange, *, previous: dict[str, Any] | None,
              current: dict[str, Any]) -> dict[str, Any]:
        """The history document of one change, as `record` writes it."""
        return {
            "id": f"{image_id[:16]}-{secrets.token_hex(8)}",
            "image_id": image_id,
            "at": utc_now(),
            "who": change.who,
            "source": change.source,
            "previous": labels_of(previous),
            "labels": labels_of(current),
        }

    def record_many(self, project_id: str, entries: Sequence[dict[str, Any]]) -> None:
        """Write entries made by `entry` together (at most MAX_BATCH_DOCUMENTS): all of them or none."""
        if len(entries) == 1:
            self.documents.create(LABEL_HISTORY, entries[0], partition_key=project_id)
        elif entries:
            self.documents.create_many(LABEL_HISTORY, entries, partition_key=project_id)

    def withdraw(self, project_id: str, entry_ids: Iterable[str]) -> None:
        """Remove entries of changes that did not happen after all (new images that could not be stored)."""
        for entry_id in entry_ids:
            with suppress(DocumentNotFoundError):
                self.documents.delete(LABEL_HISTORY, entry_id, partition_key=project_id)

    def list(self, project_id: str, image_id: str, *, limit: int = 100,
             continuation: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The image's changes, newest first."""
        query = Query(partition_key=project_id, filters=[Filter("image_id", "eq", image_id)], order_by="at",
                      descending=True)
        page = self.documents.query(LABEL_HISTORY, query, limit=limit, continuation=continuation)
        return [doc.data for doc in page.items], page.continuation
