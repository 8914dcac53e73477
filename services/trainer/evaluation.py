"""Held-out metrics and decision thresholds, from a model's predictions on held-out images.

Thresholds are chosen on the validation split and the metrics measured on the test
split, so the numbers a version carries were never tuned on the images they score.
Classifiers are measured with scikit-learn; detectors with pycocotools (see
`detection_metrics`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
)

from visiondock.drift import prediction_baseline

CURVE_POINTS = 30


def _float(value: float) -> float:
    return round(float(value), 6)


def thin_curve(precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray,
               points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """A precision-recall curve cut to about `points` points spread along the threshold axis."""
    # precision_recall_curve gives one more precision/recall than thresholds (the recall-0 end).
    count = len(thresholds)
    if count == 0:
        return {"precision": [], "recall": [], "threshold": []}
    keep = np.unique(np.linspace(0, count - 1, min(points, count)).round().astype(int))
    return {"precision": [_float(precision[i]) for i in keep], "recall": [_float(recall[i]) for i in keep],
            "threshold": [_float(thresholds[i]) for i in keep]}


def _pr_curve_and_ap(truth: np.ndarray, scores: np.ndarray) -> tuple[dict[str, list[float]], float | None]:
    if truth.sum() == 0:  # no positive example: precision and AP are undefined
        return {"precision": [], "recall": [], "threshold": []}, None
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    return thin_curve(precision, recall, thresholds), _float(average_precision_score(truth, scores))


def choose_confidence_threshold(correct: np.ndarray, confidence: np.ndarray, *,
                                target_precision: float) -> float | None:
    """The lowest confidence at which the answers kept are right at least `target_precision`
    of the time (the most answers at that precision); None without validation answers.

    `correct[i]` says whether answer i is right if given; an image that should be
    answered `unknown` is never right when given.
    """
    if len(confidence) == 0:
        return None
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    sorted_conf = confidence[order]
    # Only cut between distinct confidences: equal scores are kept or refused together.
    last_of_run = np.append(sorted_conf[1:] != sorted_conf[:-1], True)
    good = np.flatnonzero((hits >= target_precision) & last_of_run)
    if good.size:
        return _float(sorted_conf[good[-1]])
    # Never precise enough: keep only the most confident answers.
    return _float(sorted_conf[0])


def confidence_report(correct: np.ndarray, confidence: np.ndarray, threshold: float) -> dict[str, Any]:
    """What a threshold does on held-out answers: how many it keeps and how right they are."""
    kept = confidence >= threshold
    return {"coverage": _float(kept.mean()) if len(kept) else 0.0,
            "precision_kept": _float(correct[kept].mean()) if kept.any() else None}


def multiclass_metrics(targets: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=indices, zero_division=0
    )
    per_class: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for i, label in enumerate(labels):
        curves[label], ap = _pr_curve_and_ap((targets == i).astype(int), probabilities[:, i])
        per_class[label] = {"precision": _float(precision[i]), "recall": _float(recall[i]), "f1": _float(f1[i]),
                            "ap": ap, "support": int(support[i])}
    aps = [row["ap"] for row in per_class.values() if row["ap"] is not None]
    return {
        "accuracy": _float(accuracy_score(targets, predicted)),
        "macro_f1": _float(np.mean(f1)),
        "mean_ap": _float(np.mean(aps)) if aps else None,
        "test_count": len(targets),
        "per_class": per_class,
        "pr_curves": curves,
        "confusion_matrix": {"labels": list(labels),
                             "matrix": confusion_matrix(targets, predicted, labels=indices).tolist()},
        "prediction_baseline": prediction_baseline(probabilities, labels),
    }


def multilabel_thresholds(targets: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
                          default: float = 0.5) -> dict[str, float]:
    """Per tag, the probability threshold with the best F1 on validation (`default` without positives)."""
    chosen: dict[str, float] = {}
    for i, label in enumerate(labels):
        truth = targets[:, i]
        if len(truth) == 0 or truth.sum() == 0:
            chosen[label] = default
            continue
        precision, recall, thresholds = precision_recall_curve(truth, probabilities[:, i])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        chosen[label] = _float(thresholds[int(np.argmax(f1))])
    return chosen


def multilabel_metrics(targets: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
                       thresholds: dict[str, float]) -> dict[str, Any]:
    cut = np.array([thresholds[label] for label in labels], dtype=np.float64)
    predicted = (probabilities >= cut).astype(int)
    truth = targets.astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None,
                                                                     zero_division=0)
    per_class: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for i, label in enumerate(labels):
        curves[label], ap = _pr_curve_and_ap(truth[:, i], probabilities[:, i])
        per_class[label] = {"precision": _float(precision[i]), "recall": _float(recall[i]), "f1": _float(f1[i]),
                            "ap": ap, "support": int(support[i]), "threshold": thresholds[label]}
    aps = [row["ap"] for row in per_class.values() if row["ap"] is not None]
    return {
        # Exact match: every tag of the image right.
        "accuracy": _float(accuracy_score(truth, predicted)),
        "micro_f1": _float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": _float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "mean_ap": _float(np.mean(aps)) if aps else None,
        "test_count": len(targets),
        "per_class": per_class,
        "pr_curves": curves,
        "prediction_baseline": prediction_baseline(probabilities, labels),
    }


# -- detection ------------------------------------------------------------------------------
# Detection metrics with pycocotools: mAP@0.5, mAP@[.5:.95], per-class AP, precision and recall.
#
# AP follows COCO: precision interpolated at 101 recall points, boxes matched
# greedily by score, every box counted regardless of size. mAP@0.5 is the same
# computation at IoU 0.5 only (the VOC criterion; VOC's own code interpolates at
# every recall point instead of 101, which differs in the third decimal at most).
# Precision and recall are read at the served score threshold, at IoU 0.5.
# Classes with no ground-truth box in the evaluated images have no AP (None) and
# are left out of the means.


@dataclass
class ImageResult:
    """One image's ground truth and detections, x1, y1, x2, y2 in its pixels."""

    width: int
    height: int
    true_boxes: np.ndarray
    true_labels: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def _coco(images: list[dict[str, Any]], categories: list[dict[str, Any]],
          annotations: list[dict[str, Any]]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def _annotation(ident: int, image_id: int, box: np.ndarray, label: int, score: float | None) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in box)
    entry: dict[str, Any] = {"id": ident, "image_id": image_id, "category_id": int(label) + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
    if score is not None:
        entry["score"] = float(score)
    return entry


def run_cocoeval(results: list[ImageResult], label_count: int) -> COCOeval:
    images = [{"id": i + 1, "width": r.width, "height": r.height} for i, r in enumerate(results)]
    categories = [{"id": c + 1, "name": str(c)} for c in range(label_count)]
    truth: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    for i, r in enumerate(results):
        for b, lab in zip(r.true_boxes, r.true_labels, strict=True):
            truth.append(_annotation(len(truth) + 1, i + 1, b, lab, None))  # ids must be unique
        for b, lab, s in zip(r.boxes, r.labels, r.scores, strict=True):
            found.append(_annotation(len(found) + 1, i + 1, b, lab, s))
    evaluation = COCOeval(_coco(images, categories, truth), _coco(images, categories, found), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def _mean_defined(values: np.ndarray) -> float | None:
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else None


def matches_at_50(evaluation: COCOeval) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every counted detection's class, score and whether it matched at IoU 0.5; ground-truth count per class."""
    classes, scores, hits = [], [], []
    truths = np.zeros(len(evaluation.params.catIds), dtype=np.int64)
    image_count = len(evaluation.params.imgIds)
    area_count = len(evaluation.params.areaRng)
    for k in range(len(evaluation.params.catIds)):
        for i in range(image_count):
            entry = evaluation.evalImgs[k * area_count * image_count + i]  # area range "all"
            if entry is None:
                continue
            counted = ~np.asarray(entry["dtIgnore"][0], dtype=bool)
            scores.append(np.asarray(entry["dtScores"], dtype=np.float64)[counted])
            hits.append(np.asarray(entry["dtMatches"][0])[counted] > 0)
            classes.append(np.full(int(counted.sum()), k))
            truths[k] += int((~np.asarray(entry["gtIgnore"], dtype=bool)).sum())
    if not scores:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), truths
    return np.concatenate(classes), np.concatenate(scores), np.concatenate(hits), truths


def detection_metrics(results: list[ImageResult], label_names: list[str], *,
                      score_threshold: float) -> dict[str, Any]:
    """COCO-style metrics of detections against ground truth (see the module docstring)."""
    evaluation = run_cocoeval(results, len(label_names))
    # precision: [IoU thresholds, recall points, classes, area ranges, max detections]; area "all", 100 detections.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    classes, scores, hits, truths = matches_at_50(evaluation)
    served = scores >= score_threshold
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(label_names):
        mine = served & (classes == k)
        found = int(mine.sum())
        correct = int(hits[mine].sum())
        per_class[name] = {
            "ap_50": _mean_defined(precision[0, :, k]),
            "ap_50_95": _mean_defined(precision[:, :, k]) if truths[k] else None,
            "precision": correct / found if found else 0.0,
            "recall": correct / int(truths[k]) if truths[k] else None,
            "box_count": int(truths[k]),
        }
    ap50 = [v["ap_50"] for v in per_class.values() if v["ap_50"] is not None]
    ap = [v["ap_50_95"] for v in per_class.values() if v["ap_50_95"] is not None]
    found_all, correct_all = int(served.sum()), int(hits[served].sum())
    return {
        "map_50": float(np.mean(ap50)) if ap50 else None,
        "map_50_95": float(np.mean(ap)) if ap else None,
        "precision": correct_all / found_all if found_all else 0.0,
        "recall": correct_all / int(truths.sum()) if truths.sum() else None,
        "score_threshold": score_threshold,
        "per_class": per_class,
        "image_count": len(results),
        "box_count": int(sum(len(r.true_boxes) for r in results)),
    }


def best_f1_threshold(results: list[ImageResult], label_count: int, *, floor: float, ceiling: float) -> float:
    """A score threshold that maximizes F1 over all classes at IoU 0.5, within [floor, ceiling].

    Every threshold between the lowest kept score and the next score below it gives
    that F1; the midpoint leaves the widest margin either way for unseen images.
    """
    _, scores, hits, truths = matches_at_50(run_cocoeval(results, label_count))
    total = int(truths.sum())
    if not total or not scores.size:
        return floor
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    true_pos = np.cumsum(hits)
    f1 = 2 * true_pos / (np.arange(1, len(scores) + 1) + total)
    # Among equal F1, the fewest answers: fewer false alarms on unseen images.
    best = int(np.flatnonzero(f1 >= f1.max() - 1e-9)[0])
    below = scores[best + 1] if best + 1 < len(scores) else floor
    return float(np.clip(np.floor((scores[best] + below) / 2 * 100) / 100, floor, ceiling))
