"""Drift of a model's predictions in production against what it did on held-out images.

A version stores a *prediction baseline* (`metrics.prediction_baseline`): the histogram of
its top confidence and the share of each predicted label over its test images. Production
predictions are compared with it by the population stability index,

    PSI = sum over bins of (actual% - expected%) * ln(actual% / expected%)

over the same confidence bins, and over the labels (the label mix). By the usual reading
below 0.1 is stable, 0.1 to 0.25 a moderate shift, and above the threshold (0.25 unless
configured) a change worth a look: the inputs or the world moved away from the test set.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

BINS = 10
EDGES = [i / BINS for i in range(BINS + 1)]
DEFAULT_THRESHOLD = 0.25
MODERATE = 0.1
# Proportions are floored at this before the logarithm, so an empty bin is a large term, not infinity.
FLOOR = 1e-4


def confidence_bin(confidence: float) -> int:
    return min(max(int(confidence * BINS), 0), BINS - 1)


def confidence_histogram(confidences: Iterable[float]) -> list[int]:
    counts = [0] * BINS
    for confidence in confidences:
        counts[confidence_bin(float(confidence))] += 1
    return counts


def prediction_baseline(probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """What a version's test predictions looked like: top-confidence histogram and label mix."""
    if len(probabilities) == 0:
        return {}
    top = probabilities.max(axis=1)
    predicted = Counter(labels[int(i)] for i in probabilities.argmax(axis=1))
    return {"edges": EDGES, "confidence_counts": confidence_histogram(top.tolist()),
            "label_counts": {label: predicted.get(label, 0) for label in labels}, "count": len(probabilities)}


def psi(expected: Mapping[Any, float] | Sequence[float], actual: Mapping[Any, float] | Sequence[float]) -> float | None:
    """Population stability index of two count vectors (lists by bin, or dicts by label);
    None when either is empty."""
    if isinstance(expected, Mapping) or isinstance(actual, Mapping):
        assert isinstance(expected, Mapping) and isinstance(actual, Mapping)
        keys = sorted(set(expected) | set(actual))
        e_counts = [float(expected.get(k, 0)) for k in keys]
        a_counts = [float(actual.get(k, 0)) for k in keys]
    else:
        e_counts, a_counts = [float(v) for v in expected], [float(v) for v in actual]
    e_total, a_total = sum(e_counts), sum(a_counts)
    if e_total <= 0 or a_total <= 0:
        return None
    total = 0.0
    for e, a in zip(e_counts, a_counts, strict=True):
        p, q = max(e / e_total, FLOOR), max(a / a_total, FLOOR)
        total += (q - p) * math.log(q / p)
    return total


def level(value: float | None, threshold: float = DEFAULT_THRESHOLD) -> str | None:
    if value is None:
        return None
    if value >= threshold:
        return "drifted"
    return "moderate" if value >= MODERATE else "stable"


def drift_report(baseline: Mapping[str, Any] | None, confidences: Sequence[float], labels: Sequence[str], *,
                 threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """PSI of confidence and label mix of some predictions against a baseline, with levels and a flag."""
    counts = confidence_histogram(confidences)
    mix = Counter(labels)
    report: dict[str, Any] = {"count": len(confidences), "confidence_counts": counts, "label_counts": dict(mix),
                              "psi_confidence": None, "psi_label_mix": None}
    if baseline:
        report["psi_confidence"] = psi(baseline["confidence_counts"], counts)
        report["psi_label_mix"] = psi(baseline["label_counts"], dict(mix)) if mix else None
    report["level_confidence"] = level(report["psi_confidence"], threshold)
    report["level_label_mix"] = level(report["psi_label_mix"], threshold)
    report["flagged"] = any(v is not None and v >= threshold
                            for v in (report["psi_confidence"], report["psi_label_mix"]))
    return report


class SlidingWindow:
    """The last `size` predictions' confidences and labels, counted as they come and go."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: deque[tuple[int, str | None]] = deque()
        self.confidence_counts = [0] * BINS
        self.label_counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, confidence: float, label: str | None) -> None:
        item = (confidence_bin(confidence), label)
        with self._lock:
            self._items.append(item)
            self.confidence_counts[item[0]] += 1
            if label is not None:
                self.label_counts[label] += 1
            if len(self._items) > self.size:
                old_bin, old_label = self._items.popleft()
                self.confidence_counts[old_bin] -= 1
                if old_label is not None:
                    self.label_counts[old_label] -= 1

    def psi(self, baseline: Mapping[str, Any]) -> tuple[float | None, float | None]:
        """(PSI of confidence, PSI of label mix) of the window against the baseline."""
        with self._lock:
            confidence = psi(baseline["confidence_counts"], self.confidence_counts)
            labels = {k: v for k, v in self.label_counts.items() if v}
            mix = psi(baseline["label_counts"], labels) if labels else None
        return confidence, mix
