"""Tiny real ONNX models, one per task, with a real ModelCard in their metadata.

They look at colour, so a test knows the right answer: the classifiers average each
channel (a red image is `red`, a grey one a coin toss), the detector scores each
quadrant of the image for red, green and blue. Input 32 x 32: milliseconds per batch.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw, ImageFilter

from visiondock.modelcard import ModelCard
from visiondock.preprocess import PreprocessSpec

SIZE = 32
COLOURS = ["red", "green", "blue"]
OPSET = 17


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _save(graph: onnx.GraphProto, card: ModelCard, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    for key, value in card.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _image_input() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])


def _busywork(convolutions: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing `nothing` [N, 1, 1, 1] = 0 from the image through `convolutions` 3x3 convolutions."""
    if not convolutions:
        return [], []
    rng = np.random.default_rng(0)
    nodes, initializers, last = [], [], "image"
    for k in range(convolutions):
        channels_in = 3 if k == 0 else 64
        initializers.append(_const(f"busy_{k}", rng.standard_normal((64, channels_in, 3, 3)).astype(np.float32)
                                   * 0.05))
        nodes.append(helper.make_node("Conv", [last, f"busy_{k}"], [f"busy_out_{k}"], pads=[1, 1, 1, 1]))
        last = f"busy_out_{k}"
    nodes += [helper.make_node("ReduceMean", [last], ["busy_mean"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Mul", ["busy_mean", "zero"], ["nothing"])]
    initializers.append(_const("zero", np.zeros((), dtype=np.float32)))
    return nodes, initializers


def classifier(path: Path, *, task: str = "multiclass", labels: list[str] | None = None, gain: float = 10.0,
               thresholds: dict[str, float] | None = None, model_name: str = "tiny", model_version: str = "",
               extra: dict | None = None, busywork: int = 0) -> Path:
    """Mean colour → softmax (multiclass, face) or sigmoid (multilabel) over red, green, blue.

    `busywork` 3x3 convolutions (64 channels) run on the image and add nothing to the answer (their mean
    times zero): the same answers, slower (with 2: about 0.7 ms an image on one core, against 2 µs)."""
    labels = labels or list(COLOURS)
    weights = np.zeros((3, len(labels)), dtype=np.float32)
    for i in range(len(labels)):
        weights[i % 3, i] = gain
    busy, initializers = _busywork(busywork)
    nodes = [
        *busy,
        helper.make_node("GlobalAveragePool", ["image"], ["colour_means" if busy else "pooled"]),
        *([helper.make_node("Add", ["colour_means", "nothing"], ["pooled"])] if busy else []),
        helper.make_node("Flatten", ["pooled"], ["means"], axis=1),
        helper.make_node("MatMul", ["means", "weights"], ["logits"]),
        helper.make_node("Sigmoid" if task == "multilabel" else "Softmax", ["logits"], ["probabilities"],
                         **({} if task == "multilabel" else {"axis": 1})),
    ]
    graph = helper.make_graph(nodes, f"tiny-{task}", [_image_input()],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                             ["batch", len(labels)])],
                              initializer=[_const("weights", weights), *initializers])
    card = ModelCard(task=task, labels=labels, preprocess=PreprocessSpec(size=SIZE, resize=SIZE),
                     backbone="tiny-colour", thresholds=thresholds or {}, model_name=model_name,
                     model_version=model_version, extra=extra or {})
    return _save(graph, card, path)


QUADRANT_BOXES = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]],
                          dtype=np.float32)


def detector(path: Path, *, thresholds: dict[str, float] | None = None, model_name: str = "tiny-det") -> Path:
    """Four candidates (the quadrants) scored per colour: `boxes` [N, 4, 4] and `scores` [N, 4, 3]."""
    nodes = [
        helper.make_node("AveragePool", ["image"], ["cells"], kernel_shape=[SIZE // 2, SIZE // 2],
                         strides=[SIZE // 2, SIZE // 2]),
        helper.make_node("Reshape", ["cells", "cells_shape"], ["per_channel"]),
        helper.make_node("Transpose", ["per_channel"], ["per_cell"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["per_cell", "gain"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "offset"], ["shifted"]),
        helper.make_node("Sigmoid", ["shifted"], ["scores"]),
        helper.make_node("ReduceSum", ["scores", "sum_axes"], ["summed"], keepdims=1),
        helper.make_node("Mul", ["summed", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "anchor_boxes"], ["boxes"]),
    ]
    initializers = [
        _const("cells_shape", np.array([0, 3, 4], dtype=np.int64)),
        _const("gain", np.array(10.0, dtype=np.float32)),
        _const("offset", np.array(5.0, dtype=np.float32)),
        _const("sum_axes", np.array([2], dtype=np.int64)),
        _const("zero", np.array(0.0, dtype=np.float32)),
        _const("anchor_boxes", QUADRANT_BOXES),
    ]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 4, 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4, 3])]
    graph = helper.make_graph(nodes, "tiny-detection", [_image_input()], outputs, initializer=initializers)
    card = ModelCard(task="detection", labels=list(COLOURS),
                     preprocess=PreprocessSpec(size=SIZE, resize=SIZE, policy="stretch"), backbone="tiny-colour",
                     output_names=["boxes", "scores"], thresholds=thresholds or {"score": 0.5, "nms_iou": 0.5},
                     model_name=model_name)
    return _save(graph, card, path)


def not_a_model(path: Path) -> Path:
    path.write_bytes(b"this is not an ONNX file")
    return path


# -- images ------------------------------------------------------------------------------
def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str = "JPEG",
          mode: str = "RGB", **save: object) -> bytes:
    image = Image.new("RGB", size, colour)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}), **save)
    return buffer.getvalue()


def quadrants(top_left: tuple[int, int, int], bottom_right: tuple[int, int, int],
              size: tuple[int, int] = (200, 100), background: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """A PNG with one coloured top-left and one coloured bottom-right quadrant on grey."""
    width, height = size
    image = Image.new("RGB", size, background)
    image.paste(top_left, (0, 0, width // 2, height // 2))
    image.paste(bottom_right, (width // 2, height // 2, width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def face_photo(tint: tuple[int, int, int], size: tuple[int, int] = (640, 480), centre: tuple[int, int] = (220, 240),
               radius: int = 110) -> bytes:
    """A JPEG of a drawn frontal face (OpenCV's Haar cascade finds it) of colour `tint` on grey."""
    image = Image.new("RGB", size, (90, 90, 90))
    draw = ImageDraw.Draw(image)
    cx, cy = centre
    w, h = radius * 0.75, radius
    dark = tuple(c // 6 for c in tint)
    draw.ellipse((cx - w, cy - h, cx + w, cy + h), fill=tint)
    for side in (-1, 1):
        ex, ey = cx + side * w * 0.42, cy - h * 0.22
        draw.ellipse((ex - w * 0.22, ey - h * 0.07, ex + w * 0.22, ey + h * 0.07), fill=dark)  # eye
        draw.rectangle((ex - w * 0.28, ey - h * 0.2, ex + w * 0.28, ey - h * 0.14), fill=dark)  # brow
    nose = tuple(int(c * 0.8) for c in tint)
    draw.polygon([(cx, cy - h * 0.1), (cx - w * 0.12, cy + h * 0.25), (cx + w * 0.12, cy + h * 0.25)], fill=nose)
    draw.ellipse((cx - w * 0.35, cy + h * 0.42, cx + w * 0.35, cy + h * 0.55), fill=dark)  # mouth
    buffer = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(2)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()
