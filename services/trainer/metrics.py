"""Held-out metrics and decision thresholds, computed with scikit-learn.

Thresholds are chosen on the validation split and the metrics measured on the test
split, so the numbers a version carries were never tuned on the images they score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
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
DEFAULT_TARGET_PRECISION = 0.95


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
                                target_precision: float = DEFAULT_TARGET_PRECISION) -> float | None:
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
