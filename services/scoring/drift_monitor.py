"""Drift gauges: the served version's last predictions against its test-set baseline.

Each version keeps a sliding window of its last `scoring_drift_window` top confidences and
labels; after every prediction the window's PSI against the version's baseline (stored with
it in the registry, see `visiondock.drift`) is set on `visiondock_scoring_drift_psi` and
`visiondock_scoring_drift_flagged`. A version without a baseline (detection, or registered
by an older trainer) has no gauges. Counting a prediction is a few additions under a lock.
"""

from __future__ import annotations

import threading
from typing import Any

from visiondock.drift import SlidingWindow

from .metrics import ScoringMetrics
from .model import LoadedModel

# Fewer predictions than this say little about a distribution; no gauge until then.
MIN_PREDICTIONS = 20


class DriftMonitor:
    def __init__(self, metrics: ScoringMetrics, *, window: int, threshold: float) -> None:
        self.metrics = metrics
        self.window_size = window
        self.threshold = threshold
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self._lock = threading.Lock()

    def window(self, model: str, version: str) -> SlidingWindow | None:
        return self._windows.get((model, version))

    def observe(self, model: LoadedModel, answer: dict[str, Any]) -> None:
        baseline = model.identity.baseline
        confidence = answer.get("probability")
        if not baseline or not isinstance(confidence, int | float):
            return
        key = (model.name, str(model.version))
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = SlidingWindow(self.window_size)
        window.add(float(confidence), answer.get("label"))
        if len(window) < MIN_PREDICTIONS:
            return
        confidence_psi, mix_psi = window.psi(baseline)
        flagged = False
        for kind, value in (("confidence", confidence_psi), ("label_mix", mix_psi)):
            if value is not None:
                self.metrics.drift_psi.labels(model=key[0], version=key[1], kind=kind).set(value)
                flagged = flagged or value >= self.threshold
        self.metrics.drift_flagged.labels(model=key[0], version=key[1]).set(1 if flagged else 0)
