"""Captured predictions: where each part is kept, for how long, and how it goes.

With capture on (VISIONDOCK_SCORING_CAPTURE_RATE > 0) the scoring service keeps a sample of the
images it scores, each in one place only:

- the image and the whole prediction: a review item of the model's project, handed to the
  annotation service, which stores the bytes once at `review_blob_key(project, item)`
  (`visiondock.blob_keys`);
- a summary (model, version, time, labels, confidence; no image): a document of the `captures`
  collection, partition = the model, id = the capture id. The registry's production report
  queries these by model and time (`capture_query`); it never lists blobs.

Both are kept VISIONDOCK_REVIEW_RETENTION_DAYS and go with `visiondock purge-captures`
(`purge_summaries` for the summaries), and both go when their project is deleted
(`summaries_of_project`). Scoring services before this layout also wrote a second copy of each
image and prediction under `captures/<model>/` in the blob store: `visiondock fsck` reports those
blobs (`LEGACY_CAPTURE_BLOBS`, owned by no document) and `--repair` deletes them, and
`purge-captures` deletes those past the retention period.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from visiondock.blob_keys import LEGACY_CAPTURE_PREFIX, legacy_capture_of_blob
from visiondock.fsck import Pairing
from visiondock.storage import BlobStore, Document, DocumentNotFoundError, DocumentStore, Filter, Query

CAPTURES = "captures"
# Summary fields the production report reads, besides the prediction's labels and confidence.
_SUMMARY_FIELDS = ("model", "version", "alias", "variant", "task", "uncertainty", "source", "captured_at")


def summary(capture_id: str, document: dict[str, Any], project_id: str | None) -> dict[str, Any]:
    """The summary document of a captured prediction (`document`: what the scoring service hands over
    with the image): no image, and of the prediction only its labels and confidence."""
    prediction = document.get("prediction") or {}
    kept: dict[str, Any] = {}
    if prediction.get("label") is not None:
        kept["label"] = prediction["label"]
    if isinstance(prediction.get("probability"), int | float):
        kept["probability"] = prediction["probability"]
    for many in ("tags", "detections"):
        if isinstance(prediction.get(many), list):
            kept[many] = [{"label": item["label"]} for item in prediction[many]
                          if isinstance(item, dict) and isinstance(item.get("label"), str)]
    return {"id": capture_id, **{k: document.get(k) for k in _SUMMARY_FIELDS}, "project_id": project_id,
            "prediction": kept}


def capture_query(model: str, since: datetime) -> Query:
    """A model's summaries captured at or after `since`, newest first."""
    return Query(partition_key=model, filters=[Filter("captured_at", "ge", since.astimezone(UTC).isoformat())],
                 order_by="captured_at", descending=True)


def _cutoff(older_than: datetime) -> str:
    return older_than.astimezone(UTC).isoformat(timespec="microseconds")


def purge_summaries(documents: DocumentStore, *, older_than: datetime, dry_run: bool = False) -> list[str]:
    """Delete the summaries captured before `older_than` (every model); `<model>/<id>` of each."""
    query = Query(filters=[Filter("captured_at", "lt", _cutoff(older_than))], order_by="captured_at")
    return _delete_all(documents, query, dry_run=dry_run)


def summaries_of_project(documents: DocumentStore, project_id: str) -> int:
    """Delete the summaries of predictions captured for `project_id`; how many went."""
    return len(_delete_all(documents, Query(filters=[Filter("project_id", "eq", project_id)])))


def _delete_all(documents: DocumentStore, query: Query, *, dry_run: bool = False) -> list[str]:
    gone = []
    for doc in list(documents.query_all(CAPTURES, query)):
        gone.append(f"{doc.partition_key}/{doc.id}")
        if not dry_run:
            try:
                documents.delete(CAPTURES, doc.id, partition_key=doc.partition_key)
            except DocumentNotFoundError:
                continue
    return gone


def legacy_blobs(blobs: BlobStore, *, older_than: datetime) -> Iterator[str]:
    """Keys of the second copies older scoring services wrote, last modified before `older_than`."""
    for info in blobs.list(LEGACY_CAPTURE_PREFIX):
        if info.last_modified < older_than:
            yield info.key


def _no_blob(doc: Document) -> str:
    raise AssertionError("capture summaries own no blob")  # never called: LEGACY_CAPTURE_BLOBS checks blobs only


# For `visiondock fsck`: blobs under the old `captures/` prefix are strays (repair deletes them): owned by no
# document, since a summary has no blob.
LEGACY_CAPTURE_BLOBS = Pairing("captured image copies (old layout)", CAPTURES, LEGACY_CAPTURE_PREFIX, _no_blob,
                               legacy_capture_of_blob, delete_documents_without_blob=False,
                               documents_own_blobs=False)
