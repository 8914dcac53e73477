"""Model outputs → answers, in NumPy only: shared by the trainer's evaluation and the scoring service.

The output contract of an exported model, per task (see `ModelCard`):
- multiclass: `probabilities` [N, C], softmax. Thresholds: `uncertain` — below it the
  best label is flagged uncertain.
- multilabel: `probabilities` [N, C], independent sigmoids. Thresholds: one per label
  name — a tag is present when its probability reaches it (default 0.5).
- detection: `boxes` [N, A, 4] as x1, y1, x2, y2 in fractions of the model input
  (0..1), and `scores` [N, A, C] per-class probabilities, one row per candidate
  (anchor point). Thresholds: `score` (keep candidates at or above it) and `nms_iou`
  (per-class non-maximum suppression). The input is the whole frame stretched to the
  square input size, so fractions map straight to the original image's pixels.
- face: like multiclass, on the face crop. Thresholds: `unknown` — below it the answer
  is `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_NMS_IOU = 0.5
DEFAULT_MAX_DETECTIONS = 100


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    # Pixels of the original image.
    x1: float
    y1: float
    x2: float
    y2: float

    def normalized(self, width: int, height: int) -> dict[str, float]:
        """left, top, width, height as fractions of the image (the Custom Vision convention)."""
        return {"left": self.x1 / width, "top": self.y1 / height, "width": (self.x2 - self.x1) / width,
                "height": (self.y2 - self.y1) / height}


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[LabelScore]:
    """The k most probable labels of one image, most probable first."""
    scores = -probabilities
    if 0 < k < len(scores):
        # Only the candidates at or above the k-th score are sorted (a scoring hot path with 1,000 classes),
        # ties included, so the order is that of sorting everything: stable, the lower index first.
        kth = np.partition(scores, k - 1)[k - 1]
        candidates = np.flatnonzero(scores <= kth)
        order = candidates[np.argsort(scores[candidates], kind="stable")][:k]
    else:
        order = np.argsort(scores, kind="stable")[:k]
    return [LabelScore(labels[i], float(probabilities[i])) for i in order]


def present_tags(probabilities: np.ndarray, labels: list[str], thresholds: dict[str, float]) -> list[LabelScore]:
    """Every tag at or above its own threshold, most probable first (multilabel)."""
    chosen = [LabelScore(label, float(p)) for label, p in zip(labels, probabilities, strict=True)
              if p >= thresholds.get(label, 0.5)]
    return sorted(chosen, key=lambda item: -item.probability)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one x1,y1,x2,y2 box with each row of `others`."""
    ix1 = np.maximum(box[0], others[:, 0])
    iy1 = np.maximum(box[1], others[:, 1])
    ix2 = np.minimum(box[2], others[:, 2])
    iy2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    iou: np.ndarray = inter / np.maximum(area + areas - inter, 1e-12)
    return iou


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first (at most `limit` of them)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and (limit is None or len(keep) < limit):
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        # Array filtering, not a Python loop: an untrained or poorly calibrated model can
        # put thousands of candidates over the threshold.
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return keep


def decode_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: list[str],
    *,
    width: int,
    height: int,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> list[Detection]:
    """One image's candidates ([A, 4] fractions, [A, C] scores) → boxes in original pixels."""
    found: list[Detection] = []
    for c, label in enumerate(labels):
        candidates = np.flatnonzero(scores[:, c] >= score_threshold)
        if candidates.size == 0:
            continue
        class_boxes = np.clip(boxes[candidates], 0.0, 1.0)
        # Empty boxes overlap nothing, so dropping them before suppression changes nothing else.
        solid = (class_boxes[:, 2] > class_boxes[:, 0]) & (class_boxes[:, 3] > class_boxes[:, 1])
        class_boxes, class_scores = class_boxes[solid], scores[candidates[solid], c]
        # A class can place at most max_detections boxes in the answer: stop suppressing there.
        for i in nms(class_boxes, class_scores, nms_iou, limit=max_detections):
            x1, y1, x2, y2 = class_boxes[i]
            found.append(Detection(label, float(class_scores[i]), float(x1 * width), float(y1 * height),
                                   float(x2 * width), float(y2 * height)))
    found.sort(key=lambda d: -d.score)
    return found[:max_detections]
