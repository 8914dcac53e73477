"""The prediction pipeline behind every route: admit → decode and preprocess (thread
pool) → dynamic batch (runner threads) → answer → capture.

The event loop only parses requests and writes answers; decoding runs on a bounded
thread pool and inference on the batcher's runner threads, so health probes answer at once
however busy the model is.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from visiondock.errors import InvalidInput, TimedOut, Unavailable
from visiondock.images import DecodedImage, decode_rgb
from visiondock.vocabulary import DETECTION

from .answers import build_answer, no_face_answer, predicted_labels
from .batcher import BatcherStoppedError, DynamicBatcher, QueueFullError
from .capture import CaptureSink
from .drift_monitor import DriftMonitor
from .metrics import ScoringMetrics
from .model import LoadedModel, PreparedImage
from .render import FORMATS, draw_answer, encode
from .repository import ModelRepository
from .settings import DEFAULT_MAX_BATCH_SIZE, ScoringSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_AFTER_SECONDS = 1


class _Admission:
    """The images of one request while they are in progress (a class, not a generator: it runs per request)."""

    __slots__ = ("count", "scoring")

    def __init__(self, scoring: ScoringService, count: int) -> None:
        self.scoring, self.count = scoring, count

    def __enter__(self) -> None:
        scoring, count = self.scoring, self.count
        if scoring._in_progress + count > scoring.settings.scoring_max_queue_size:
            scoring.metrics.rejected.labels(reason="queue_full").inc()
            raise Unavailable(f"the service is at capacity ({scoring._in_progress} images in progress); retry "
                              "shortly", retry_after=RETRY_AFTER_SECONDS, code="queue_full")
        scoring._in_progress += count
        scoring.metrics.in_progress.inc(count)

    def __exit__(self, *_: object) -> None:
        self.scoring._in_progress -= self.count
        self.scoring.metrics.in_progress.dec(self.count)


class ScoringService:
    def __init__(self, settings: ScoringSettings, repository: ModelRepository, *, metrics: ScoringMetrics,
                 capture: CaptureSink | None = None) -> None:
        self.settings = settings
        self.repository = repository
        self.metrics = metrics
        self.capture = capture
        # Sized for where the sessions loaded so far run (what the settings expect, before any).
        gpu = repository.device.gpu
        self.batcher = DynamicBatcher(max_batch_size=settings.scoring_max_batch_size or DEFAULT_MAX_BATCH_SIZE,
                                      max_queue_delay=settings.scoring_max_queue_delay_ms / 1000,
                                      max_queue_size=settings.scoring_max_queue_size,
                                      runners=settings.resolved_batch_runners(gpu=gpu), metrics=metrics)
        self.executor = ThreadPoolExecutor(max_workers=settings.scoring_decode_threads,
                                           thread_name_prefix="decode")
        self._in_progress = 0
        self.drift = DriftMonitor(metrics, window=settings.scoring_drift_window,
                                  threshold=settings.drift_psi_threshold)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self.batcher.start()
        if self.capture is not None and self.capture.enabled:
            self.capture.start()
        self.repository.start()

    def stop(self) -> None:
        self.repository.stop()
        self.batcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.capture is not None:
            self.capture.stop()

    def not_ready_because(self) -> list[str]:
        return self.repository.not_ready_because()

    # -- the pipeline ----------------------------------------------------------------
    def admitted(self, count: int = 1) -> _Admission:
        """Bound the images in progress (`with scoring.admitted(n):`); beyond it, 503 with Retry-After
        instead of a growing queue."""
        return _Admission(self, count)

    async def off_loop(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args, **kwargs))

    async def infer(self, model: LoadedModel, inputs: np.ndarray, *, deadline: float) -> Any:
        try:
            return await self.batcher.infer(model, inputs, timeout=max(0.001, deadline - time.perf_counter()))
        except QueueFullError:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise Unavailable("the batching queue is full; retry shortly", retry_after=RETRY_AFTER_SECONDS,
                              code="queue_full") from None
        except TimeoutError:
            self.metrics.rejected.labels(reason="timeout").inc()
            raise TimedOut(f"no answer within {self.settings.scoring_request_timeout_seconds:g} s; the service "
                           "is overloaded", retry_after=RETRY_AFTER_SECONDS) from None
        except BatcherStoppedError as exc:
            raise Unavailable(str(exc), retry_after=RETRY_AFTER_SECONDS) from None

    async def answer(self, model: LoadedModel, prepared: PreparedImage, *, started: float) -> dict[str, Any]:
        """Batch-infer a prepared image and build the whole answer, timings included."""
        deadline = started + self.settings.scoring_request_timeout_seconds
        timings = dict(prepared.timings)
        batch_size = 0
        if prepared.tensor is None:
            body = no_face_answer()
            timings.update(queue=0.0, inference=0.0, postprocess=0.0)
        else:
            result = await self.infer(model, prepared.tensor[None], deadline=deadline)
            mark = time.perf_counter()
            rows = [output[0] for output in result.outputs]
            top, uncertain_below = self.settings.scoring_top_k, self.settings.scoring_uncertain_below
            if model.task == DETECTION:  # suppression over many candidates: milliseconds, off the loop
                body = await self.off_loop(build_answer, model, rows, prepared, top=top,
                                           uncertain_below=uncertain_below)
            else:  # a top-k over one row: microseconds, cheaper than a thread hop
                body = build_answer(model, rows, prepared, top=top, uncertain_below=uncertain_below)
            timings.update(queue=result.queue_seconds * 1000, inference=result.inference_seconds * 1000,
                           postprocess=(time.perf_counter() - mark) * 1000)
            batch_size = result.batch_size
        for stage, series in self.metrics.stage.items():
            if stage in timings:
                series.observe(timings[stage] / 1000)
        for label in predicted_labels(body):
            self.metrics.predicted(model.name, model.version, label)
        self.drift.observe(model, body)
        timings["total"] = (time.perf_counter() - started) * 1000
        return {"model": model.name, "version": model.version, "alias": model.identity.alias,
                "variant": model.identity.variant, "task": model.task, **body,
                "image": {"width": prepared.width, "height": prepared.height}, "batch_size": batch_size,
                "timings_ms": {k: round(v, 3) for k, v in timings.items()}}

    async def predict(self, data: bytes, *, model: LoadedModel, source: str = "predict",
                      filename: str = "") -> dict[str, Any]:
        """One encoded image → `model`'s answer."""
        started = time.perf_counter()
        with self.admitted():
            prepared = await self.off_loop(model.prepare, data, max_pixels=self.settings.scoring_max_pixels)
            answer = await self.answer(model, prepared, started=started)
        if self.capture is not None and self.capture.should_capture():
            self.capture.offer(model, data, answer, width=prepared.width, height=prepared.height,
                               image_format=prepared.format, filename=filename, source=source)
        return answer

    async def render(self, data: bytes, *, model: LoadedModel, fmt: str) -> tuple[bytes, dict[str, Any]]:
        """The image with `model`'s answer drawn on it, at full size."""
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        started = time.perf_counter()
        with self.admitted():
            decoded = await self.off_loop(model.decode, data, max_pixels=self.settings.scoring_max_pixels)
            prepared = await self.off_loop(model.prepare_decoded, decoded)
            answer = await self.answer(model, prepared, started=started)
            picture = await self.off_loop(self._picture, data, decoded, answer, model.card.labels, fmt)
        return picture, answer

    def _picture(self, data: bytes, decoded: DecodedImage, answer: dict[str, Any], labels: list[str],
                 fmt: str) -> bytes:
        # JPEG draft mode may have decoded a reduced image for the model; the picture is the original size.
        canvas = decoded.image
        if canvas.size != (decoded.width, decoded.height):
            canvas = decode_rgb(data, max_pixels=self.settings.scoring_max_pixels)
        return encode(draw_answer(canvas, answer, labels), fmt)

    async def infer_tensor(self, model: LoadedModel, inputs: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for an already preprocessed N x 3 x S x S tensor (Open Inference Protocol)."""
        started = time.perf_counter()
        deadline = started + self.settings.scoring_request_timeout_seconds
        step = model.max_batch
        # Rows beyond the model's batch limit go in several inferences: one session call never holds more
        # activations than the batching limit allows.
        with self.admitted(int(inputs.shape[0])):
            results = [await self.infer(model, inputs[start:start + step], deadline=deadline)
                       for start in range(0, int(inputs.shape[0]), step)]
        self.metrics.stage["queue"].observe(sum(r.queue_seconds for r in results))
        self.metrics.stage["inference"].observe(sum(r.inference_seconds for r in results))
        if len(results) == 1:
            outputs: list[np.ndarray] = results[0].outputs
            return outputs
        return [np.concatenate(parts) for parts in zip(*(r.outputs for r in results), strict=True)]

    # -- what /readyz and /v1/model say ------------------------------------------------
    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {**self.repository.default_status(),
                                "queue_depth": self.batcher.depth, "in_progress": self._in_progress,
                                "batching": {"max_batch_size": self.batcher.max_batch_size,
                                             "max_queue_delay_ms": self.settings.scoring_max_queue_delay_ms,
                                             "runners": self.batcher.runners}}
        waiting = self.not_ready_because()
        if waiting:
            body["not_ready_because"] = waiting
        if self.capture is not None:
            body["capture_rate"] = self.capture.rate
        return body
