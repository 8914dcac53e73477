"""Detection metrics with pycocotools: mAP@0.5, mAP@[.5:.95], per-class AP, precision and recall.

AP follows COCO: precision interpolated at 101 recall points, boxes matched
greedily by score, every box counted regardless of size. mAP@0.5 is the same
computation at IoU 0.5 only (the VOC criterion; VOC's own code interpolates at
every recall point instead of 101, which differs in the third decimal at most).
Precision and recall are read at the served score threshold, at IoU 0.5.
Classes with no ground-truth box in the evaluated images have no AP (None) and
are left out of the means.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


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
