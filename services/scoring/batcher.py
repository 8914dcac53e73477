"""Dynamic batching, after Triton's dynamic batcher.

Requests put their input tensors on a bounded queue and await a future. A runner
thread takes the oldest request, gathers more requests for the same model until the
batch holds `max_batch_size` images or `max_queue_delay` has passed since the oldest
arrived, runs the batch in one ONNX Runtime call and hands each request its rows.
Under load the queue is never empty when a run ends, so batches fill without waiting;
when idle, a lone request waits at most `max_queue_delay`.

With several runners (Triton's model instances) several batches run at once, one per
runner, while gathering stays one at a time. On CPU that beats one batch spread over
every core: each run needs fewer ONNX Runtime threads, which then wait less for each
other and for the threads decoding images on the same cores.

Inference never runs on the asyncio event loop. A full queue raises `QueueFullError`
(the route answers 503 with Retry-After) rather than letting latency grow without
bound. Each request carries its own model, so during a hot swap the requests that
started on the old model finish on it while new ones batch on the new model.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import ScoringMetrics
from .model import LoadedModel

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The batching queue is full: the caller should retry later."""


class BatcherStoppedError(Exception):
    """The service is shutting down."""


@dataclass(frozen=True)
class BatchResult:
    outputs: list[np.ndarray]  # this request's rows of each output, in the model's output order
    queue_seconds: float
    inference_seconds: float
    batch_size: int


@dataclass(eq=False)
class _Request:
    model: LoadedModel
    inputs: np.ndarray
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # timed out or cancelled: skip it

    @property
    def rows(self) -> int:
        return int(self.inputs.shape[0])


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (timeout, disconnect)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class DynamicBatcher:
    def __init__(self, *, max_batch_size: int, max_queue_delay: float, max_queue_size: int, runners: int = 1,
                 metrics: ScoringMetrics | None = None) -> None:
        if runners < 1:
            raise ValueError(f"a batcher needs at least one runner, got {runners}")
        self.max_batch_size = max_batch_size
        self.runners = runners
        self.max_queue_delay = max_queue_delay
        self._queue: queue.Queue[_Request] = queue.Queue(maxsize=max_queue_size)
        self._held: deque[_Request] = deque()  # taken from the queue but not batchable with the last batch
        self._metrics = metrics
        self._stopping = threading.Event()
        self._gathering = threading.Lock()  # one runner gathers at a time: `_held` is shared
        self._threads: list[threading.Thread] = []
        if metrics is not None:
            metrics.set_queue_depth_source(lambda: float(self.depth))

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._held)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._work, name=f"batcher-{index}", daemon=True)
                         for index in range(self.runners)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        leftover = list(self._held)
        self._held.clear()
        while True:
            try:
                leftover.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for request in leftover:
            request.loop.call_soon_threadsafe(_settle, request.future, None,
                                              BatcherStoppedError("the service is shutting down"))

    async def infer(self, model: LoadedModel, inputs: np.ndarray, *, timeout: float) -> BatchResult:
        """Run `inputs` (N x 3 x S x S) through `model` in some batch; raises QueueFullError, TimeoutError."""
        if self._stopping.is_set():
            raise BatcherStoppedError("the service is shutting down")
        loop = asyncio.get_running_loop()
        request = _Request(model, inputs, loop, loop.create_future())
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise QueueFullError(f"{self._queue.maxsize} requests are already waiting") from None
        # A timer failing the future, rather than asyncio.wait_for's second future and task per request.
        expiry = loop.call_later(timeout, _expire, request.future)
        try:
            return await request.future
        except BaseException:  # timeout or cancellation: a runner skips it if it has not started
            request.abandoned = True
            raise
        finally:
            expiry.cancel()

    # -- the runner threads ----------------------------------------------------------
    def _next(self) -> _Request | None:
        while not self._stopping.is_set():
            if self._held:
                request = self._held.popleft()
            else:
                try:
                    request = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
            if not request.abandoned:
                return request
        return None

    def _gather(self, first: _Request) -> list[_Request]:
        # The batcher's limit, and the model's own (an fp32 model on a CPU shares its batch among the runners).
        limit = min(self.max_batch_size, first.model.max_batch)
        batch, rows = [first], first.rows
        # Requests held back from earlier batches come first, in arrival order.
        for request in list(self._held):
            if rows >= limit:
                return batch
            if request.model is first.model and rows + request.rows <= limit:
                self._held.remove(request)
                if not request.abandoned:
                    batch.append(request)
                    rows += request.rows
        deadline = first.enqueued + self.max_queue_delay
        while rows < limit:
            remaining = deadline - time.perf_counter()
            try:
                request = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if request.abandoned:
                continue
            if request.model is not first.model or rows + request.rows > limit:
                self._held.append(request)
                if rows + request.rows > limit:
                    break
                continue
            batch.append(request)
            rows += request.rows
        return batch

    def _work(self) -> None:
        while True:
            with self._gathering:
                first = self._next()
                if first is None:
                    return
                batch = self._gather(first)
            try:
                self._run(batch)
            except Exception:  # the runner must survive anything; _run settles its own requests
                log.exception("batch runner error")

    def _run(self, batch: list[_Request]) -> None:
        model = batch[0].model
        started = time.perf_counter()
        try:
            inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([r.inputs for r in batch])
            outputs = model.run(inputs)
        except Exception as exc:
            if len(batch) > 1:
                # One bad request must not fail its neighbours: run each alone to find it.
                for request in batch:
                    self._run([request])
                return
            log.warning("inference failed for %s version %s: %s", model.name, model.version, exc)
            batch[0].loop.call_soon_threadsafe(_settle, batch[0].future, None, exc)
            return
        elapsed = time.perf_counter() - started
        total = int(inputs.shape[0])
        if self._metrics is not None:
            self._metrics.batch_size.observe(total)
        offset = 0
        for request in batch:
            rows = [output[offset:offset + request.rows] for output in outputs]
            offset += request.rows
            result = BatchResult(rows, started - request.enqueued, elapsed, total)
            request.loop.call_soon_threadsafe(_settle, request.future, result, None)
