"""A training run's steps, timed and reported to the registry's training-run resource.

`with steps.step("train"): ...` reports the stage, times it and records the seconds
in the run's report (`timings["train_s"]`); `steps.epoch` reports per-epoch metrics
while a step runs. Progress reports are best effort: a registry that misses one epoch's
update does not stop the training (the next report or the registration catches up).
Marking the run failed is attempted whatever happened, so a run never stays `running`
after its Job ended in an error it could report.

A run cancelled in the registry refuses the next report (409 `run_finished`): the report
raises `RunCancelled` in the training loop, at an epoch's end or a stage's start; a refusal
seen by the heartbeat thread is kept and raised at the next epoch or stage. Each report may
carry the time left (`remaining_s`), which the registry stores on the run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from visiondock.clients import RegistryClient, ServiceError
from visiondock.timeutil import duration

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 1.0
HEARTBEAT_INTERVAL_S = 30.0


class RunCancelled(Exception):
    """The run was cancelled (or finished otherwise) in the registry: the training stops."""


def log_line(changes: dict[str, Any]) -> str:
    """One line of the run's log for a progress report."""
    parts = [f"{key} {changes[key]}" for key in ("status", "stage") if changes.get(key)]
    if changes.get("epoch") is not None:
        parts.append(f"epoch {changes['epoch']}/{changes.get('epochs')}")
    if changes.get("remaining_seconds") is not None:
        parts.append(f"about {duration(changes['remaining_seconds'])} left")
    metrics = changes.get("metrics") or {}
    parts += [f"{name}={value:.4g}" for name, value in metrics.items() if isinstance(value, int | float)]
    if changes.get("error"):
        parts.append(f"error: {changes['error']}")
    return " ".join(parts)


class RunSteps:
    def __init__(self, registry: RegistryClient, run_id: str) -> None:
        self.registry = registry
        self.run_id = run_id
        # What the run reports beside its metrics: skipped images, feature cache use, timings...
        self.report: dict[str, Any] = {}
        self.timings: dict[str, float] = self.report.setdefault("timings", {})
        self._last_sent = 0.0
        self._stopped = threading.Event()
        self._cancelled: RunCancelled | None = None  # seen by the heartbeat thread, raised by the training's

    def start_heartbeat(self, interval: float = HEARTBEAT_INTERVAL_S) -> None:
        """Report "still alive" every `interval` seconds, so the registry can tell a long stage from
        a killed trainer (a run silent for minutes becomes `lost`)."""

        def beat() -> None:
            while not self._stopped.wait(interval):
                try:
                    self._send()
                except RunCancelled as cancelled:
                    self._cancelled = cancelled
                    return

        threading.Thread(target=beat, name=f"heartbeat-{self.run_id}", daemon=True).start()

    def stop_heartbeat(self) -> None:
        self._stopped.set()

    def check_cancelled(self) -> None:
        """Raise RunCancelled when the heartbeat learned that the run was cancelled."""
        if self._cancelled is not None:
            raise self._cancelled

    def _send(self, **changes: Any) -> None:
        try:
            self.registry.update_run(self.run_id, **changes)
            self._last_sent = time.monotonic()
            line = log_line(changes)
            if line:  # a heartbeat says nothing worth a line
                self.registry.append_run_log(self.run_id, [line])
        except ServiceError as exc:
            if exc.code == "run_finished":
                raise RunCancelled(f"run {self.run_id} was stopped in the registry: {exc}") from None
            log.warning("could not report progress of run %s: %s", self.run_id, exc)

    def stage(self, name: str, **extra: Any) -> None:
        """Report that the run is at stage `name` (untimed)."""
        log.info("run %s: %s", self.run_id, name)
        self.check_cancelled()
        self._send(status="running", stage=name, **extra)

    @contextlib.contextmanager
    def step(self, name: str, *, stage: bool = True) -> Iterator[None]:
        """Report stage `name` (unless `stage` is False) and record how long the block took as `name_s`."""
        if stage:
            self.stage(name)
        started = time.perf_counter()
        yield
        self.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)

    def epoch(self, epoch: int, epochs: int, metrics: dict[str, float], *, remaining_s: float | None = None) -> None:
        """Report an epoch's metrics and, when known, the seconds the whole run has left."""
        self.check_cancelled()
        # Every epoch of a slow run; at most one report a second from a fast one, and always the first (the
        # first estimate of the time left) and the last.
        if epoch in (1, epochs) or time.monotonic() - self._last_sent >= MIN_INTERVAL_S:
            extra = {} if remaining_s is None else {"remaining_seconds": round(max(remaining_s, 0.0), 1)}
            self._send(status="running", epoch=epoch, epochs=epochs, metrics=metrics, **extra)

    def remaining(self, remaining_s: float) -> None:
        """Report the seconds the run has left, between epochs (e.g. when a stage after training starts)."""
        self._send(remaining_seconds=round(max(remaining_s, 0.0), 1))

    def fail(self, error: str) -> None:
        log.error("run %s failed: %s", self.run_id, error)
        try:
            self.registry.update_run(self.run_id, status="failed", error=error[:8000], report=self.report or None)
            self.registry.append_run_log(self.run_id, [log_line({"status": "failed", "error": error[:1900]})])
        except ServiceError as exc:
            log.error("could not mark run %s failed: %s", self.run_id, exc)
