"""What a detection version says about itself beyond mAP: how sure that figure is, where its
errors come from, and how a variant file compares with fp32.

- `map_estimate`: mAP@0.5 and mAP@[.5:.95] with a 95 % interval from a bootstrap over images
  (an image's boxes and detections stay together, so the interval reflects how much the figure
  depends on which photos happened to be held out), with the image and box counts it rests on.
- `map_difference`: the same bootstrap, paired, for one model against another on the same images
  (a variant file against fp32): the mAP difference with its interval.
- `detection_pr_curves`: per class, precision against recall at IoU 0.5 as the score threshold
  falls, in the shape of the classifiers' curves (`evaluation.thin_curve`).
- `error_breakdown`: per class, what became of each true box (found, wrong class, mislocated,
  missed) and which false detections were made (duplicate, background), in the spirit of the
  TIDE error types (Bolya et al. 2020), at the served score threshold.

AP is computed as pycocotools computes it (101 recall points, greedy matching by score per
image, every box counted whatever its size) from the per-image matches pycocotools makes; a
bootstrap sample weights each image by how often it was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.cocoeval import COCOeval

from .evaluation import ImageResult, run_cocoeval, thin_curve

CONFIDENCE = 0.95
RESAMPLES = 2000
# TIDE's background threshold: a false detection overlapping no true box by this much is background.
BACKGROUND_IOU = 0.1
MATCH_IOU = 0.5


@dataclass
class ClassMatches:
    """One class's counted detections over all images, ranked by score: which image each came from,
    whether it matched at each IoU threshold [T, D]; and the class's true boxes per image."""

    image: np.ndarray  # [D]
    scores: np.ndarray  # [D], highest first
    hits: np.ndarray  # [T, D] bool
    counted: np.ndarray  # [T, D] bool: not matched to an ignored box
    truths: np.ndarray  # [images] true boxes of the class in each image


def class_matches(evaluation: COCOeval) -> list[ClassMatches]:
    """Per class, the matches pycocotools made (area range "all", at most maxDets[-1] detections an image)."""
    params = evaluation.params
    images, areas, max_det = len(params.imgIds), len(params.areaRng), params.maxDets[-1]
    thresholds = len(params.iouThrs)
    found = []
    for k in range(len(params.catIds)):
        image_ids, scores, hits, counted = [], [], [], []
        truths = np.zeros(images, dtype=np.int64)
        for i in range(images):
            entry = evaluation.evalImgs[k * areas * images + i]
            if entry is None:
                continue
            score = np.asarray(entry["dtScores"], dtype=np.float64)[:max_det]
            matches = np.asarray(entry["dtMatches"]).reshape(thresholds, -1)[:, :max_det]
            ignored = np.asarray(entry["dtIgnore"], dtype=bool).reshape(thresholds, -1)[:, :max_det]
            truths[i] = int((~np.asarray(entry["gtIgnore"], dtype=bool)).sum())
            image_ids.append(np.full(len(score), i))
            scores.append(score)
            hits.append((matches > 0) & ~ignored)
            counted.append(~ignored)
        if scores:
            ranked = np.concatenate(scores)
            order = np.argsort(-ranked, kind="mergesort")  # pycocotools' ranking
            found.append(ClassMatches(np.concatenate(image_ids)[order], ranked[order],
                                      np.concatenate(hits, 1)[:, order], np.concatenate(counted, 1)[:, order],
                                      truths))
        else:
            found.append(ClassMatches(np.zeros(0, np.int64), np.zeros(0), np.zeros((thresholds, 0), bool),
                                      np.zeros((thresholds, 0), bool), truths))
    return found


def _ap(matches: ClassMatches, weights: np.ndarray, recall_points: np.ndarray) -> np.ndarray | None:
    """AP at each IoU threshold [T] with images weighted (a bootstrap sample); None without true boxes."""
    total = float((matches.truths * weights).sum())
    if total == 0:
        return None
    thresholds = matches.hits.shape[0]
    if matches.image.size == 0:
        return np.zeros(thresholds)
    w = weights[matches.image]
    tp = np.cumsum(matches.hits * w, axis=1)
    fp = np.cumsum((matches.counted & ~matches.hits) * w, axis=1)
    recall = tp / total
    precision = tp / np.maximum(tp + fp, np.spacing(1))
    # Precision made non-increasing in recall, as pycocotools does before reading it at each recall point.
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = np.zeros(thresholds)
    for t in range(thresholds):
        at = np.searchsorted(recall[t], recall_points, side="left")
        reached = at < recall.shape[1]
        ap[t] = precision[t, at[reached]].sum() / len(recall_points)
    return ap


def _maps(per_class: list[ClassMatches], weights: np.ndarray, recall_points: np.ndarray) -> tuple[float, float]:
    """mAP@0.5 and mAP@[.5:.95] over the classes with true boxes (nan when none has)."""
    aps = [ap for ap in (_ap(m, weights, recall_points) for m in per_class) if ap is not None]
    if not aps:
        return float("nan"), float("nan")
    stacked = np.stack(aps)
    return float(stacked[:, 0].mean()), float(stacked.mean())


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def _draws(count: int, resamples: int, seed: int) -> np.ndarray:
    """How often each image is drawn in each bootstrap sample [resamples, count]."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(count, np.full(count, 1 / count), size=resamples).astype(np.float64)


def map_estimate(results: list[ImageResult], label_count: int, *, source: str, resamples: int = RESAMPLES,
                 seed: int = 0) -> dict[str, Any]:
    """mAP@0.5 and mAP@[.5:.95] on `results` with their 95 % bootstrap intervals over images."""
    evaluation = run_cocoeval(results, label_count)
    per_class = class_matches(evaluation)
    recall_points = evaluation.params.recThrs
    count = len(results)
    map50, map_all = _maps(per_class, np.ones(count), recall_points)
    samples = np.array([_maps(per_class, w, recall_points) for w in _draws(count, resamples, seed)]) \
        if count else np.zeros((0, 2))
    estimate: dict[str, Any] = {}
    for column, name, value in ((0, "map_50", map50), (1, "map_50_95", map_all)):
        low, high = _interval(samples[:, column]) if count else (None, None)
        estimate[name] = {"value": None if np.isnan(value) else round(value, 4), "low": low, "high": high}
    boxes = int(sum(len(r.true_boxes) for r in results))
    headline = estimate["map_50"]
    # The headline in the shape every task's estimate has (metric, value, interval, images, source), so a
    # detection version reads like a classifier; mAP@[.5:.95] and the counts beside it.
    return {"metric": "mAP@0.5", "value": headline["value"], "interval": [headline["low"], headline["high"]],
            "images": count, "boxes": boxes, **estimate, "confidence": CONFIDENCE, "method": "bootstrap over images",
            "resamples": resamples, "source": source, "image_count": count, "box_count": boxes}


def map_difference(reference: list[ImageResult], other: list[ImageResult], label_count: int, *,
                   resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """mAP@0.5 of `other` minus that of `reference` on the same images, with its 95 % interval from a
    paired bootstrap (each sample draws the same images for both)."""
    if len(reference) != len(other):
        raise ValueError("the two models must be scored on the same images")
    evaluations = [run_cocoeval(results, label_count) for results in (reference, other)]
    matches = [class_matches(e) for e in evaluations]
    recall_points = evaluations[0].params.recThrs
    count = len(reference)

    def difference(weights: np.ndarray) -> float:
        return _maps(matches[1], weights, recall_points)[0] - _maps(matches[0], weights, recall_points)[0]

    value = difference(np.ones(count))
    low, high = _interval(np.array([difference(w) for w in _draws(count, resamples, seed)])) if count else \
        (None, None)
    return {"value": None if np.isnan(value) else round(value, 4), "low": low, "high": high,
            "confidence": CONFIDENCE, "resamples": resamples, "image_count": count}


def detection_pr_curves(results: list[ImageResult], label_names: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per class, precision and recall at IoU 0.5 at each score threshold (lowest threshold first, as
    the classifiers' curves); empty lists for a class without true boxes."""
    evaluation = run_cocoeval(results, len(label_names))
    curves: dict[str, dict[str, list[float]]] = {}
    for name, matches in zip(label_names, class_matches(evaluation), strict=True):
        total = int(matches.truths.sum())
        if not total or not matches.image.size:
            curves[name] = {"precision": [], "recall": [], "threshold": []}
            continue
        keep = matches.counted[0]
        hits, scores = matches.hits[0][keep], matches.scores[keep]
        tp = np.cumsum(hits)
        fp = np.cumsum(~hits)
        precision, recall = tp / (tp + fp), tp / total
        # Lowest threshold first: the order evaluation.thin_curve and precision_recall_curve use.
        curves[name] = thin_curve(precision[::-1], recall[::-1], scores[::-1])
    return curves


def _iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every box [N, 4] with every other box [M, 4] (x1, y1, x2, y2) → [N, M]."""
    if not len(boxes) or not len(others):
        return np.zeros((len(boxes), len(others)))
    x1 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_boxes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_others = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area_boxes[:, None] + area_others[None, :] - inter
    result: np.ndarray = inter / np.maximum(union, 1e-9)
    return result


ERROR_KEYS = ("found", "wrong_class", "mislocated", "missed", "duplicate", "background", "false_positives")


def error_breakdown(results: list[ImageResult], label_names: list[str], *, score_threshold: float) -> dict[str, Any]:
    """Per class, what the served detections (score ≥ `score_threshold`) did with each true box and
    which false detections they made; each true box and each detection is counted once.

    True boxes of a class (`boxes` = found + wrong_class + mislocated + missed):
    - found: matched at IoU ≥ 0.5 by a detection of its class (greedy by score, as for AP);
    - wrong_class: not found, but a detection of another class covers it at IoU ≥ 0.5
      (`confused_with` counts the classes it was given);
    - mislocated: not found, but a detection of its class overlaps it at 0.1 ≤ IoU < 0.5;
    - missed: none of these.
    Detections of a class that matched nothing (`false_positives`), among them:
    - duplicate: IoU ≥ 0.5 with a box of its class that another detection already found;
    - background: IoU < 0.1 with every true box.
    (The rest are the detection side of a wrong class or a mislocated box, counted above.)
    """
    counts: dict[str, dict[str, int]] = {name: {**dict.fromkeys(ERROR_KEYS, 0), "boxes": 0} for name in label_names}
    confused: dict[str, dict[str, int]] = {name: {} for name in label_names}
    for r in results:
        keep = r.scores >= score_threshold
        boxes, labels, scores = r.boxes[keep], r.labels[keep], r.scores[keep]
        order = np.argsort(-scores, kind="stable")
        boxes, labels = boxes[order], labels[order]
        overlap = _iou(boxes, r.true_boxes)  # [detections, truths]
        same = labels[:, None] == r.true_labels[None, :]
        taken = np.zeros(len(r.true_boxes), dtype=bool)
        matched = np.zeros(len(boxes), dtype=bool)
        for d in range(len(boxes)):  # greedy by score: the best free box of the same class
            candidates = np.where(same[d] & ~taken & (overlap[d] >= MATCH_IOU), overlap[d], -1.0)
            if len(candidates) and candidates.max() >= MATCH_IOU:
                taken[int(candidates.argmax())] = matched[d] = True
        for t, label in enumerate(r.true_labels):
            name = label_names[int(label)]
            row = counts[name]
            row["boxes"] += 1
            if taken[t]:
                row["found"] += 1
            elif (other := np.flatnonzero(~same[:, t] & (overlap[:, t] >= MATCH_IOU))).size:
                row["wrong_class"] += 1
                given = label_names[int(labels[other[0]])]  # the highest-scored
                confused[name][given] = confused[name].get(given, 0) + 1
            elif (same[:, t] & (overlap[:, t] >= BACKGROUND_IOU)).any():
                row["mislocated"] += 1
            else:
                row["missed"] += 1
        for d in np.flatnonzero(~matched).tolist():
            row = counts[label_names[int(labels[d])]]
            row["false_positives"] += 1
            if (same[d] & taken & (overlap[d] >= MATCH_IOU)).any():
                row["duplicate"] += 1
            elif not (overlap[d] >= BACKGROUND_IOU).any():
                row["background"] += 1
    total = {key: sum(row[key] for row in counts.values()) for key in (*ERROR_KEYS, "boxes")}
    rows = {name: {**counts[name], "confused_with": confused[name]} for name in label_names}
    return {"per_class": rows, "total": total, "score_threshold": score_threshold, "match_iou": MATCH_IOU,
            "background_iou": BACKGROUND_IOU, "image_count": len(results)}
