"""Consistency check between the document store and the blob store (`visiondock fsck`).

Every write that spans both goes blob first, then document, and undoes the blob when the
document fails; a process killed in between (SIGKILL, a node lost) can still leave a blob
without its document, and a bug or a hand-edited store a document without its blob. Each
service declares its pairs of documents and blobs as `Pairing`s; `check` walks them and
reports both kinds, `repair` also fixes them:

- a blob without a document is deleted, when older than `grace` (younger ones may belong
  to an upload that is about to write its document);
- a document without its blob is deleted when the pairing says the document is worthless
  without its bytes (an image), and only reported otherwise (a model version a person must
  look at).

A pairing whose documents own no blobs (`documents_own_blobs=False`) names a prefix where every
blob is a stray: the second copies of captured images older scoring services wrote
(`visiondock.captures`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from visiondock.storage import BlobStore, Document, DocumentNotFoundError, DocumentStore

DEFAULT_GRACE = timedelta(minutes=10)
ProblemKind = Literal["document_without_blob", "blob_without_document"]


@dataclass(frozen=True)
class Pairing:
    """Documents of `collection` each owning the blob at `blob_key(document)`, under `blob_prefix`."""

    name: str
    collection: str
    blob_prefix: str
    blob_key: Callable[[Document], str]
    # The document (partition key, id) a blob under the prefix belongs to; None: not one of ours.
    owner: Callable[[str], tuple[str, str] | None]
    delete_documents_without_blob: bool = True
    # False: no document owns a blob under the prefix; every blob there is a stray.
    documents_own_blobs: bool = True

    def owned(self, documents: DocumentStore, key: str) -> tuple[str, str, bool] | None:
        """(partition key, id, whether that document exists) of the blob's owner; None: not ours."""
        owner = self.owner(key)
        if owner is None:
            return None
        partition_key, doc_id = owner
        if not self.documents_own_blobs:
            return partition_key, doc_id, False
        try:
            documents.get(self.collection, doc_id, partition_key=partition_key)
            return partition_key, doc_id, True
        except DocumentNotFoundError:
            return partition_key, doc_id, False


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    pairing: str
    blob_key: str
    document: str  # collection/partition/id
    action: str  # what repair does (or did): "delete the blob", "delete the document", "report only"

    def line(self) -> str:
        what = "document without its blob" if self.kind == "document_without_blob" else "blob without a document"
        return f"{self.pairing}: {what}: {self.document} -> {self.blob_key} ({self.action})"


def check(documents: DocumentStore, blobs: BlobStore, pairings: Iterable[Pairing], *,
          grace: timedelta = DEFAULT_GRACE, now: datetime | None = None) -> Iterator[Problem]:
    now = now or datetime.now(UTC)
    for pairing in pairings:
        for doc in documents.query_all(pairing.collection) if pairing.documents_own_blobs else ():
            key = pairing.blob_key(doc)
            if not blobs.exists(key):
                action = "delete the document" if pairing.delete_documents_without_blob else "report only"
                yield Problem("document_without_blob", pairing.name, key,
                              f"{pairing.collection}/{doc.partition_key}/{doc.id}", action)
        for info in blobs.list(pairing.blob_prefix):
            owned = pairing.owned(documents, info.key)
            if owned is None or owned[2]:
                continue
            partition_key, doc_id, _ = owned
            action = "delete the blob" if now - info.last_modified >= grace else "keep: younger than the grace period"
            yield Problem("blob_without_document", pairing.name, info.key,
                          f"{pairing.collection}/{partition_key}/{doc_id}", action)


def repair(documents: DocumentStore, blobs: BlobStore, problems: Iterable[Problem],
           pairings: Iterable[Pairing]) -> list[Problem]:
    """Fix what `check` found; the problems acted on. Each fix re-checks first, so a repair running
    beside live traffic never removes what an upload completed meanwhile."""
    by_name = {p.name: p for p in pairings}
    done = []
    for problem in problems:
        pairing = by_name[problem.pairing]
        _, partition_key, doc_id = problem.document.split("/", 2)
        if problem.action == "delete the blob":
            owned = pairing.owned(documents, problem.blob_key)
            if owned is not None and owned[2]:
                continue  # its document arrived after all
            blobs.delete(problem.blob_key)
        elif problem.action == "delete the document":
            if blobs.exists(problem.blob_key):
                continue
            try:
                documents.delete(pairing.collection, doc_id, partition_key=partition_key)
            except DocumentNotFoundError:
                continue
        else:
            continue
        done.append(problem)
    return done
