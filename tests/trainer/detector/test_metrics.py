"""Detection metrics against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.evaluation import ImageResult, best_f1_threshold, detection_metrics


def _image(truth: list[list[float]], true_labels: list[int], found: list[list[float]], labels: list[int],
           scores: list[float]) -> ImageResult:
    return ImageResult(width=200, height=200, true_boxes=np.array(truth, np.float32).reshape(-1, 4),
                       true_labels=np.array(true_labels, np.int64), boxes=np.array(found, np.float32).reshape(-1, 4),
                       labels=np.array(labels, np.int64), scores=np.array(scores, np.float32))


def hand_case() -> list[ImageResult]:
    # Class "egg": two boxes in two images; ranked detections hit, miss, hit.
    # Class "milk": one box found at IoU 0.72 (100 x 72 inside 100 x 100).
    return [
        _image([[10, 10, 50, 50], [100, 100, 200, 200]], [0, 1],
               [[10, 10, 50, 50], [60, 60, 90, 90], [100, 100, 200, 172]], [0, 0, 1], [0.9, 0.8, 0.6]),
        _image([[20, 20, 80, 80]], [0], [[20, 20, 80, 80]], [0], [0.7]),
        _image([], [], [[0, 0, 30, 30]], [0], [0.1]),  # a negative image with a low-scored false alarm
    ]


def test_ap_matches_the_hand_computed_value() -> None:
    metrics = detection_metrics(hand_case(), ["egg", "milk"], score_threshold=0.75)
    # egg, ranked: 0.9 hit (P 1, R .5), 0.8 miss (P .5), 0.7 hit (P 2/3, R 1), 0.1 miss.
    # COCO's 101-point interpolated precision: 1 for recall 0..0.5 (51 points), 2/3 above (50 points).
    egg_ap = (51 * 1.0 + 50 * 2 / 3) / 101
    egg = metrics["per_class"]["egg"]
    assert egg["ap_50"] == pytest.approx(egg_ap)
    assert egg["ap_50_95"] == pytest.approx(egg_ap)  # exact boxes: the same at every IoU threshold
    # milk: IoU 0.72 counts at thresholds 0.50 ... 0.70 (5 of 10), perfectly.
    milk = metrics["per_class"]["milk"]
    assert milk["ap_50"] == pytest.approx(1.0)
    assert milk["ap_50_95"] == pytest.approx(0.5)
    assert metrics["map_50"] == pytest.approx((egg_ap + 1.0) / 2)
    assert metrics["map_50_95"] == pytest.approx((egg_ap + 0.5) / 2)
    # At the served threshold 0.75 only egg's 0.9 (hit) and 0.8 (miss) are answered.
    assert (egg["precision"], egg["recall"]) == (0.5, 0.5)
    assert (milk["precision"], milk["recall"]) == (0.0, 0.0)
    assert metrics["image_count"] == 3
    assert metrics["box_count"] == 3


def test_a_class_without_ground_truth_has_no_ap_and_is_left_out() -> None:
    results = [_image([[10, 10, 50, 50]], [0], [[10, 10, 50, 50], [60, 60, 90, 90]], [0, 1], [0.9, 0.8])]
    metrics = detection_metrics(results, ["egg", "milk"], score_threshold=0.5)
    assert metrics["per_class"]["milk"]["ap_50"] is None
    assert metrics["map_50"] == pytest.approx(1.0)
    assert metrics["precision"] == 0.5


def test_best_f1_threshold_keeps_the_hits_and_drops_the_tail() -> None:
    # All classes ranked: 0.9 hit, 0.8 miss, 0.7 hit, 0.6 hit (milk, IoU 0.72), 0.1 miss; 3 true boxes.
    # F1 = 2 TP / (answers + truths): 0.5, 0.4, 0.67, 0.86 (best, keeping 0.6), 0.75.
    # Any threshold in (0.1, 0.6] keeps exactly those; the midpoint is 0.35.
    threshold = best_f1_threshold(hand_case(), 2, floor=0.05, ceiling=0.9)
    assert threshold == pytest.approx(0.35)
