"""What a detection version says about itself: mAP with a bootstrap interval, paired differences,
per-class PR curves and the error breakdown, against pycocotools and cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cli.version_summary import estimate_text, print_training_result, short_estimate, summary_of, variant_text
from services.trainer.detection_evaluation import detection_pr_curves, error_breakdown, map_difference, map_estimate
from services.trainer.evaluation import ImageResult, detection_metrics
from services.trainer.job import TrainingResult
from visiondock.vocabulary import DETECTION

from .test_metrics import _image, hand_case


def random_results(rng: np.random.Generator, count: int, classes: int = 3) -> list[ImageResult]:
    """Images with 0-6 boxes each, found with jitter (some under another class), plus false alarms."""
    results = []
    for _ in range(count):
        corners = rng.uniform(0, 300, (int(rng.integers(0, 7)), 2))
        truth = np.hstack([corners, corners + rng.uniform(20, 80, corners.shape)]).astype(np.float32)
        labels = rng.integers(0, classes, len(truth))
        noise = rng.uniform(0, 300, (int(rng.integers(0, 4)), 2))
        found = np.vstack([truth + rng.normal(0, 6, truth.shape), np.hstack([noise, noise + 40])]).astype(np.float32)
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2] + 1)
        given = np.concatenate([np.where(rng.random(len(truth)) < 0.85, labels, rng.integers(0, classes, len(truth))),
                                rng.integers(0, classes, len(noise))])
        results.append(ImageResult(400, 400, truth, labels.astype(np.int64), found, given.astype(np.int64),
                                   rng.random(len(found)).astype(np.float32)))
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_estimate_is_pycocotools_map_with_an_interval_around_it(seed: int) -> None:
    results = random_results(np.random.default_rng(seed), 25)
    coco = detection_metrics(results, ["a", "b", "c"], score_threshold=0.5)
    estimate = map_estimate(results, 3, source="test", resamples=500)
    for name in ("map_50", "map_50_95"):
        figure = estimate[name]
        assert figure["value"] == pytest.approx(coco[name], abs=1e-4)
        assert figure["low"] < figure["value"] < figure["high"]
    assert (estimate["image_count"], estimate["box_count"]) == (25, coco["box_count"])
    assert estimate["confidence"] == 0.95 and estimate["source"] == "test" and estimate["resamples"] == 500


def test_the_interval_narrows_as_images_are_added_and_vanishes_when_they_agree() -> None:
    rng = np.random.default_rng(3)
    few, many = random_results(rng, 8), random_results(rng, 120)

    def width(results: list[ImageResult]) -> float:
        figure = map_estimate(results, 3, source="test", resamples=500)["map_50"]
        return figure["high"] - figure["low"]

    assert width(many) < width(few) / 2
    # Every image the same: every bootstrap sample scores the same.
    same = map_estimate([hand_case()[0]] * 6, 2, source="test", resamples=200)
    assert same["map_50"]["low"] == same["map_50"]["value"] == same["map_50"]["high"]
    assert map_estimate(hand_case(), 2, source="test")["map_50"]["value"] == pytest.approx(
        detection_metrics(hand_case(), ["egg", "milk"], score_threshold=0.5)["map_50"], abs=1e-4)


def test_a_paired_difference_is_zero_for_the_same_answers_and_negative_for_worse_ones() -> None:
    results = random_results(np.random.default_rng(4), 30)
    same = map_difference(results, results, 3, resamples=300)
    assert (same["value"], same["low"], same["high"]) == (0.0, 0.0, 0.0) and same["image_count"] == 30
    # The other model misplaces every other box: lower on nearly every sample of images.
    worse = []
    for r in results:
        boxes = r.boxes.copy()
        boxes[::2] += 60
        worse.append(ImageResult(r.width, r.height, r.true_boxes, r.true_labels, boxes, r.labels, r.scores))
    difference = map_difference(results, worse, 3, resamples=300)
    assert difference["value"] < -0.1 and difference["high"] < 0
    with pytest.raises(ValueError, match="same images"):
        map_difference(results, worse[:-1], 3)


def test_pr_curves_are_ranked_by_threshold_like_the_classifiers() -> None:
    curves = detection_pr_curves(hand_case(), ["egg", "milk"])
    egg = curves["egg"]
    # egg ranked: 0.9 hit, 0.8 miss, 0.7 hit, 0.1 miss; two true boxes. Lowest threshold first.
    assert egg["threshold"] == pytest.approx([0.1, 0.7, 0.8, 0.9])
    assert egg["precision"] == pytest.approx([0.5, 2 / 3, 0.5, 1.0], abs=1e-6)
    assert egg["recall"] == pytest.approx([1.0, 1.0, 0.5, 0.5])
    assert curves["milk"] == {"precision": [1.0], "recall": [1.0], "threshold": [pytest.approx(0.6)]}
    nothing = detection_pr_curves([_image([], [], [[0, 0, 5, 5]], [1], [0.9])], ["egg", "milk"])
    assert nothing["egg"] == nothing["milk"] == {"precision": [], "recall": [], "threshold": []}


def test_each_error_is_counted_once_under_its_tide_type() -> None:
    truth = [[0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 500, 500], [600, 0, 700, 100]]
    found = [[0, 0, 100, 100],      # egg box A: found
             [2, 2, 100, 100],      # egg on A again: a duplicate
             [200, 200, 300, 300],  # milk box B called egg: wrong class
             [400, 400, 450, 450],  # egg box C at IoU 0.25: mislocated
             [800, 800, 850, 850],  # milk where nothing is: background
             [600, 0, 700, 100]]    # milk box D, below the served threshold: missed
    image = _image(truth, [0, 1, 0, 1], found, [0, 0, 0, 0, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.55, 0.2])
    errors = error_breakdown([image], ["egg", "milk"], score_threshold=0.5)
    egg, milk = errors["per_class"]["egg"], errors["per_class"]["milk"]
    assert {k: egg[k] for k in ("boxes", "found", "wrong_class", "mislocated", "missed")} == \
        {"boxes": 2, "found": 1, "wrong_class": 0, "mislocated": 1, "missed": 0}
    # egg's unmatched detections: the duplicate, the egg on the milk box, the mislocated one.
    assert (egg["false_positives"], egg["duplicate"], egg["background"]) == (3, 1, 0)
    assert {k: milk[k] for k in ("boxes", "found", "wrong_class", "mislocated", "missed")} == \
        {"boxes": 2, "found": 0, "wrong_class": 1, "mislocated": 0, "missed": 1}
    assert milk["confused_with"] == {"egg": 1}
    assert (milk["false_positives"], milk["duplicate"], milk["background"]) == (1, 0, 1)
    assert errors["total"]["boxes"] == 4 and errors["total"]["found"] == 1
    assert (errors["score_threshold"], errors["match_iou"], errors["background_iou"]) == (0.5, 0.5, 0.1)
    # Found boxes agree with the metrics' recall at the same threshold.
    recall = detection_metrics([image], ["egg", "milk"], score_threshold=0.5)["per_class"]["egg"]["recall"]
    assert recall == egg["found"] / egg["boxes"]


def test_a_detection_estimate_reads_like_a_classifiers_and_the_command_line_prints_it() -> None:
    # One shape for every task (metric, value, interval, images, source), so `visiondock models` and the
    # dashboard read a detection version as they read a classifier; mAP printed as a number, not a percentage.
    results = random_results(np.random.default_rng(6), 20)
    estimate = map_estimate(results, 3, source="held-out", resamples=300)
    assert estimate["metric"] == "mAP@0.5" and estimate["images"] == 20 and estimate["source"] == "held-out"
    assert estimate["value"] == estimate["map_50"]["value"]
    assert estimate["interval"] == [estimate["map_50"]["low"], estimate["map_50"]["high"]]
    assert estimate["boxes"] == estimate["box_count"]
    text = estimate_text({"estimate": estimate})
    assert text is not None
    assert f"mAP@0.5 on new photos {estimate['value']:.3f} (95 % interval {estimate['interval'][0]:.3f}-" in text
    assert f"mAP@[.5:.95] {estimate['map_50_95']['value']:.3f}" in text and "20 images" in text and "%" not in \
        text.split("interval")[1].split(")")[0]
    assert short_estimate({"estimate": estimate}).startswith(f"mAP@0.5 {estimate['value']:.3f} [")


def test_a_refused_detection_variant_says_it_loses_map_with_the_interval() -> None:
    results = random_results(np.random.default_rng(4), 30)
    difference = map_difference(results, results[::-1], 3, resamples=200)
    checked = {"accepted": False, "registered": False, "map_50_difference": difference}
    text = variant_text("INT8", checked)
    assert text.startswith("INT8 variant not registered (it loses mAP@0.5): mAP@0.5 against fp32 ")
    assert f"on {difference['image_count']} labeled images" in text


def test_visiondock_train_and_models_print_a_detectors_estimate_and_errors() -> None:
    results = random_results(np.random.default_rng(8), 12)
    labels = ["a", "b", "c"]
    metrics = {**detection_metrics(results, labels, score_threshold=0.5), "test_count": 12, "train_count": 30,
               "estimate": map_estimate(results, 3, source="held-out", resamples=200),
               "errors": error_breakdown(results, labels, score_threshold=0.5),
               "threshold_selection": {"note": "the score threshold is the default 0.5"}}
    lines: list[str] = []
    print_training_result(TrainingResult("shelf", 2, metrics, [], 5.0, run_id="r2", task=DETECTION), lines.append)
    text = "\n".join(lines)
    assert "expected mAP@0.5 on new photos" in text and "from 12 images" in text
    assert "note: the score threshold is the default 0.5" in text and "misloc." in text
    missed = metrics["errors"]["per_class"]["a"]["missed"]
    assert next(line for line in lines if line.strip().startswith("a ")).split()[-4] == str(missed)
    assert summary_of(DETECTION).headline(metrics).startswith("mAP@0.5 ") and "n=12" in \
        summary_of(DETECTION).headline(metrics)
