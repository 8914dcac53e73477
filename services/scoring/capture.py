"""Prediction capture: a sample of scored images goes to a person for review.

A captured prediction is kept as `visiondock.captures` lays it out: its summary (model,
version, time, labels, confidence; no image) as a document of the `captures` collection, which
the registry's production report reads, and the image with the whole prediction handed to the
annotation service's review queue of the model's project, which keeps the one copy of the
image. All of it happens on one background thread fed by a bounded queue: a request only pays
for a `put_nowait`, a full queue drops the capture (counted in
`visiondock_scoring_captures_total{outcome="dropped"}`), and no failure here ever reaches the
request that was captured.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from visiondock.captures import CAPTURES, summary
from visiondock.clients import AnnotationClient
from visiondock.storage import DocumentStore
from visiondock.timeutil import utc_now

from .metrics import ScoringMetrics
from .model import LoadedModel

log = logging.getLogger(__name__)
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "GIF": "image/gif",
                 "WEBP": "image/webp"}


@dataclass(frozen=True)
class Capture:
    id: str
    data: bytes
    format: str
    filename: str
    project_id: str | None
    document: dict[str, Any]  # the prediction document


def capture_id() -> str:
    """Sortable by time, unique: `20250101T120000Z-<12 hex>`."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:12]}"


def prediction_document(item_id: str, model: LoadedModel, answer: dict[str, Any], *, width: int,
                        height: int, image_format: str, source: str) -> dict[str, Any]:
    prediction = {k: v for k, v in answer.items()
                  if k not in ("model", "version", "alias", "variant", "task", "timings_ms", "uncertainty")}
    return {"id": item_id, "model": model.name, "version": model.version, "alias": model.identity.alias,
            "variant": model.identity.variant, "task": model.task, "uncertainty": answer.get("uncertainty", 0.0),
            "prediction": prediction, "image": {"width": width, "height": height, "format": image_format},
            "source": source, "captured_at": utc_now()}


class CaptureSink:
    def __init__(self, *, rate: float, documents: DocumentStore | None, annotation: AnnotationClient | None,
                 project_override: str = "", queue_size: int = 64, metrics: ScoringMetrics | None = None) -> None:
        self.rate = rate
        self.documents = documents
        self.annotation = annotation
        self.project_override = project_override
        self.metrics = metrics
        self._queue: queue.Queue[Capture | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._random = random.Random()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def should_capture(self) -> bool:
        return self.rate > 0 and (self.rate >= 1 or self._random.random() < self.rate)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.captures.labels(outcome=outcome).inc()

    def offer(self, model: LoadedModel, data: bytes, answer: dict[str, Any], *, width: int, height: int,
              image_format: str, filename: str, source: str) -> None:
        """Queue a capture; never raises, never blocks."""
        try:
            item_id = capture_id()
            document = prediction_document(item_id, model, answer, width=width, height=height,
                                           image_format=image_format, source=source)
            project = self.project_override or model.identity.project_id
            capture = Capture(item_id, data, image_format, filename[:200] or item_id, project, document)
            self._queue.put_nowait(capture)
            self._count("queued")
        except queue.Full:
            self._count("dropped")
        except Exception:  # a capture must never fail the request it samples
            log.exception("could not queue a capture")
            self._count("dropped")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued (up to `timeout`), then stop."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):  # the queue stays full: stop without draining it
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)

    def _work(self) -> None:
        while (capture := self._queue.get()) is not None:
            try:
                self._handle(capture)
            except Exception:
                log.exception("capture %s failed", capture.id)

    def _handle(self, capture: Capture) -> None:
        model = capture.document["model"]
        content_type = CONTENT_TYPES.get(capture.format, "application/octet-stream")
        if self.documents is not None:
            try:
                self.documents.put(CAPTURES, summary(capture.id, capture.document, capture.project_id),
                                   partition_key=model)
                self._count("stored")
            except Exception as exc:
                log.warning("could not store the summary of capture %s: %s", capture.id, exc)
                self._count("store_failed")
        if self.annotation is None:
            return
        if not capture.project_id:
            self._count("no_project")
            return
        try:
            self.annotation.submit_review_item(capture.project_id, capture.id, capture.data, capture.document,
                                               filename=capture.filename, content_type=content_type)
            self._count("sent")
        except Exception as exc:
            log.warning("could not hand capture %s to the review queue of %s: %s", capture.id,
                        capture.project_id, exc)
            self._count("send_failed")
