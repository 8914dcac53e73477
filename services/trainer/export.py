"""ONNX export with the model card in its metadata, checked against torch.

A model is registered only if ONNX Runtime computes what torch computes on
validation images (`ParityError` otherwise): for classifiers the largest absolute
difference of the probabilities and the agreement of the top-1 answers; for
detectors the largest difference of boxes and scores and the agreement of the
decoded detections (after the score threshold and NMS of `visiondock.postprocess`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from visiondock.modelcard import ModelCard
from visiondock.postprocess import Detection, box_iou, decode_detections

OPSET = 17
TOLERANCE = 1e-3
# Decoded detections of the two runtimes are the same when labels match and boxes overlap this much.
SAME_BOX_IOU = 0.9


class ParityError(RuntimeError):
    """The exported file does not compute what the torch model computes."""


def write_card(path: Path, card: ModelCard, *, extra_metadata: dict[str, str] | None = None) -> None:
    """Replace the file's VisionDock metadata with `card` (plus `extra_metadata`)."""
    proto = onnx.load(str(path))
    values = {**card.to_metadata(), **(extra_metadata or {})}
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "visiondock-trainer"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def export_graph(model: nn.Module, example: torch.Tensor, path: Path, *, input_name: str,
                 output_names: list[str]) -> Path:
    """Export `model` (batch dimension dynamic) to `path`."""
    model.eval()
    # The TorchScript exporter: the dynamo one wants opset 18 and onnxscript.
    with warnings.catch_warnings():
        # Tracer notes about the backbone's padding arithmetic and "Constant folding not applied":
        # harmless for a fixed input size, and noise in a Job's log.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu(), (example,), str(path), input_names=[input_name], output_names=output_names,
            dynamic_axes={input_name: {0: "batch"}, **{name: {0: "batch"} for name in output_names}},
            opset_version=OPSET, dynamo=False,
        )
    return path


def export_onnx(model: nn.Module, card: ModelCard, path: Path) -> Path:
    size = card.preprocess.size
    export_graph(model, torch.zeros(1, 3, size, size), path, input_name=card.input_name,
                 output_names=card.output_names)
    write_card(path, card)
    return path


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(sess: ort.InferenceSession, inputs: np.ndarray, batch_size: int = 16) -> list[np.ndarray]:
    """Every output of the session over `inputs`, in batches, concatenated."""
    name = sess.get_inputs()[0].name
    chunks = [sess.run(None, {name: inputs[i:i + batch_size]}) for i in range(0, len(inputs), batch_size)]
    return [np.concatenate([chunk[k] for chunk in chunks]) for k in range(len(sess.get_outputs()))]


def run_torch(model: nn.Module, inputs: np.ndarray, batch_size: int = 16) -> list[np.ndarray]:
    model = model.eval().cpu()
    outputs: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            result = model(torch.from_numpy(inputs[i:i + batch_size]))
            result = result if isinstance(result, tuple | list) else (result,)
            outputs.append([r.numpy() for r in result])
    return [np.concatenate([chunk[k] for chunk in outputs]) for k in range(len(outputs[0]))]


def top1_agreement(expected: np.ndarray, actual: np.ndarray) -> float:
    return float((expected.argmax(1) == actual.argmax(1)).mean()) if len(expected) else 1.0


def check_parity(model: nn.Module, path: Path, inputs: np.ndarray, *, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Run the same inputs through torch and ONNX Runtime; raise ParityError if they disagree."""
    if not len(inputs):
        raise ParityError("no images to check the exported model on; nothing was registered")
    expected = run_torch(model, inputs)[0]
    actual = run_session(session(path), inputs)[0]
    max_abs = float(np.abs(expected - actual).max())
    agreement = top1_agreement(expected, actual)
    report = {"max_abs_diff": max_abs, "top1_agreement": agreement, "checked": len(inputs)}
    if max_abs > tolerance or agreement < 1.0:
        raise ParityError(f"ONNX export differs from torch: max |diff| {max_abs:.2e}, top-1 agreement "
                          f"{agreement:.3f}; nothing was registered")
    return report


def decoded(boxes: np.ndarray, scores: np.ndarray, card: ModelCard) -> list[list[Detection]]:
    """Each image's detections in fractions of the image (width = height = 1)."""
    return [decode_detections(b, s, card.labels, width=1, height=1,
                              score_threshold=card.thresholds.get("score", 0.3),
                              nms_iou=card.thresholds.get("nms_iou", 0.5))
            for b, s in zip(boxes, scores, strict=True)]


def detection_agreement(expected: list[list[Detection]], actual: list[list[Detection]]) -> float:
    """Mean over images of the share of detections both sides found (same label, IoU ≥ 0.9)."""
    shares = []
    for left, right in zip(expected, actual, strict=True):
        if not left and not right:
            shares.append(1.0)
            continue
        unmatched = list(right)
        matched = 0
        for det in left:
            candidates = [d for d in unmatched if d.label == det.label]
            if not candidates:
                continue
            ious = box_iou(np.array([det.x1, det.y1, det.x2, det.y2]),
                           np.array([[d.x1, d.y1, d.x2, d.y2] for d in candidates]))
            best = int(np.argmax(ious))
            if ious[best] >= SAME_BOX_IOU:
                matched += 1
                unmatched.remove(candidates[best])
        shares.append(matched / max(len(left), len(right)))
    return float(np.mean(shares)) if shares else 1.0


def check_detection_parity(model: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard, *,
                           tolerance: float = TOLERANCE, min_agreement: float = 0.99) -> dict[str, Any]:
    """Boxes and scores from torch and ONNX Runtime agree, and so do the decoded detections."""
    if not len(inputs):
        raise ParityError("no images to check the exported detector on; nothing was registered")
    torch_boxes, torch_scores = run_torch(model, inputs)[:2]
    ort_boxes, ort_scores = run_session(session(path), inputs)[:2]
    max_boxes = float(np.abs(torch_boxes - ort_boxes).max())
    max_scores = float(np.abs(torch_scores - ort_scores).max())
    agreement = detection_agreement(decoded(torch_boxes, torch_scores, card), decoded(ort_boxes, ort_scores, card))
    report = {"max_abs_diff": max(max_boxes, max_scores), "max_abs_diff_boxes": max_boxes,
              "max_abs_diff_scores": max_scores, "detection_agreement": agreement, "checked": len(inputs)}
    if max_scores > tolerance or max_boxes > tolerance or agreement < min_agreement:
        raise ParityError(f"ONNX export differs from torch: max |diff| boxes {max_boxes:.2e}, scores "
                          f"{max_scores:.2e}, detection agreement {agreement:.3f}; nothing was registered")
    return report
