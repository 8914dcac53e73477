"""One image's model outputs → the JSON answer, per task (see `visiondock.postprocess`).

- multiclass: `predictions` (top k), `label`, `probability`; `uncertain` when the best
  probability is below the card's `uncertain` threshold (or the service default).
- face: the same on the largest face's crop, with `face_found` and `face` (its box);
  below the card's `unknown` threshold the label is `unknown`. No face: `face_found:
  false`, no predictions, `uncertain: true`.
- multilabel: `tags` (every label at or above its own threshold) and `predictions`
  (top k); `uncertain` when no tag reaches its threshold.
- detection: `detections` with pixel `box` (x1, y1, x2, y2 of the original image) and
  normalized `region` (left, top, width, height); `uncertain` when the best detection
  scores below the card's `uncertain` threshold (default 0.5), or nothing was found.

`uncertainty` (0 = sure, 1 = a coin toss) orders the review queue of captured predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visiondock.postprocess import (
    DEFAULT_NMS_IOU,
    DEFAULT_SCORE_THRESHOLD,
    LabelScore,
    decode_detections,
    present_tags,
    top_k,
)
from visiondock.vocabulary import DETECTION, FACE, MULTILABEL, UNKNOWN_LABEL

from .model import LoadedModel, PreparedImage

DEFAULT_DETECTION_CONFIDENT = 0.5


def _scores(items: list[LabelScore]) -> list[dict[str, Any]]:
    return [{"label": s.label, "probability": s.probability} for s in items]


def build_answer(model: LoadedModel, outputs: list[np.ndarray], prepared: PreparedImage, *, top: int,
                 uncertain_below: float) -> dict[str, Any]:
    """The task-specific part of an answer; `outputs` are this image's rows, in card order."""
    card = model.card
    task = card.task
    if task == DETECTION:
        return _detection(model, outputs, prepared)
    probabilities = outputs[0]
    if task == MULTILABEL:
        tags = present_tags(probabilities, card.labels, card.thresholds)
        best = top_k(probabilities, card.labels, top)
        return {"tags": _scores(tags), "predictions": _scores(best),
                "label": tags[0].label if tags else None,
                "probability": tags[0].probability if tags else best[0].probability,
                "uncertain": not tags,
                "uncertainty": _multilabel_uncertainty(probabilities, card.labels, card.thresholds)}
    best = top_k(probabilities, card.labels, top)
    answer: dict[str, Any] = {"predictions": _scores(best), "label": best[0].label,
                              "probability": best[0].probability}
    if task == FACE:
        unknown_below = card.thresholds.get("unknown", card.thresholds.get("uncertain", uncertain_below))
        answer["face_found"] = True
        answer["face"] = _face(prepared)
        answer["uncertain"] = best[0].probability < unknown_below
        if answer["uncertain"]:
            answer["label"] = UNKNOWN_LABEL
    else:
        answer["uncertain"] = best[0].probability < card.thresholds.get("uncertain", uncertain_below)
    answer["uncertainty"] = 1.0 - best[0].probability
    return answer


def no_face_answer() -> dict[str, Any]:
    return {"face_found": False, "face": None, "predictions": [], "label": None, "probability": None,
            "uncertain": True, "uncertainty": 0.0}


def _face(prepared: PreparedImage) -> dict[str, Any] | None:
    if prepared.face_box is None:
        return None
    x1, y1, x2, y2 = prepared.face_box
    return {"box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
            "region": _region(x1, y1, x2, y2, prepared.width, prepared.height)}


def _region(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> dict[str, float]:
    return {"left": x1 / width, "top": y1 / height, "width": (x2 - x1) / width, "height": (y2 - y1) / height}


def _multilabel_uncertainty(probabilities: np.ndarray, labels: list[str], thresholds: dict[str, float]) -> float:
    """1 when some label sits exactly on its threshold, 0 when every label is at 0 or 1."""
    limits = np.array([thresholds.get(label, 0.5) for label in labels], dtype=np.float32)
    span = np.maximum(limits, 1.0 - limits)
    closeness = 1.0 - np.abs(probabilities - limits) / np.maximum(span, 1e-6)
    return float(np.clip(closeness.max(), 0.0, 1.0))


def _detection(model: LoadedModel, outputs: list[np.ndarray], prepared: PreparedImage) -> dict[str, Any]:
    card = model.card
    named = dict(zip(card.output_names, outputs, strict=True))
    found = decode_detections(
        named["boxes"], named["scores"], card.labels, width=prepared.width, height=prepared.height,
        score_threshold=card.thresholds.get("score", DEFAULT_SCORE_THRESHOLD),
        nms_iou=card.thresholds.get("nms_iou", DEFAULT_NMS_IOU),
    )
    detections = [{"label": d.label, "score": d.score,
                   "box": {"x1": d.x1, "y1": d.y1, "x2": d.x2, "y2": d.y2},
                   "region": d.normalized(prepared.width, prepared.height)} for d in found]
    best = found[0].score if found else 0.0
    confident = card.thresholds.get("uncertain", DEFAULT_DETECTION_CONFIDENT)
    return {"detections": detections, "label": found[0].label if found else None,
            "probability": best if found else None, "uncertain": best < confident,
            "uncertainty": max((1.0 - d.score for d in found), default=0.0)}


def predicted_labels(answer: dict[str, Any]) -> list[str]:
    """The labels an answer asserts, for the per-label prediction counter."""
    if "detections" in answer:
        return [d["label"] for d in answer["detections"]]
    if "tags" in answer:
        return [t["label"] for t in answer["tags"]]
    return [answer["label"]] if answer.get("label") else []
