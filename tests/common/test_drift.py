"""The population stability index and the sliding window the scoring service keeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from visiondock.drift import SlidingWindow, drift_report, level, prediction_baseline, psi


def test_psi_is_zero_for_the_same_mix_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    # Two bins, 50/50 against 80/20: (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5).
    expected = 0.3 * math.log(1.6) - 0.3 * math.log(0.4)
    assert psi([50, 50], [80, 20]) == pytest.approx(expected)
    assert psi({"cat": 5, "dog": 5}, {"cat": 8, "dog": 2}) == pytest.approx(expected)
    assert psi({"cat": 5}, {"dog": 5}) > 10  # a label never seen in the test set: large, not infinite
    assert psi([0, 0], [1, 1]) is None
    assert [level(v) for v in (0.05, 0.1, 0.2, 0.25, 3.0, None)] == [
        "stable", "moderate", "moderate", "drifted", "drifted", None]
    assert level(0.2, threshold=0.15) == "drifted"


def test_a_report_flags_either_psi_above_the_threshold() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.3, 0.7]])
    baseline = prediction_baseline(probabilities, ["cat", "dog"])
    assert baseline["label_counts"] == {"cat": 2, "dog": 2} and sum(baseline["confidence_counts"]) == 4
    same = drift_report(baseline, [0.9, 0.8, 0.95, 0.7], ["cat", "dog", "cat", "dog"])
    assert same["psi_label_mix"] == pytest.approx(0.0) and not same["flagged"]
    shifted = drift_report(baseline, [0.9, 0.95, 0.9, 0.92], ["cat"] * 4)
    assert shifted["flagged"] and shifted["level_label_mix"] == "drifted"
    assert drift_report(None, [0.5], ["cat"])["psi_confidence"] is None


def test_the_sliding_window_forgets_the_oldest_predictions() -> None:
    window = SlidingWindow(3)
    for confidence, label in ((0.95, "cat"), (0.15, "dog"), (0.55, "dog"), (0.55, "cat")):
        window.add(confidence, label)
    assert len(window) == 3 and sum(window.confidence_counts) == 3
    assert window.confidence_counts[9] == 0 and window.confidence_counts[5] == 2
    assert dict(window.label_counts) == {"cat": 1, "dog": 2}
