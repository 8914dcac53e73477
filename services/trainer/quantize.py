"""Static INT8 quantization (QDQ, per-channel weights) calibrated on training images.

The INT8 file is a variant of a version, registered only when it keeps the fp32 model's
quality: quick classifiers by their out-of-fold accuracy (below), advanced classifiers by
their accuracy on every labeled image, detectors by mAP@0.5 on validation images (no more
than 0.01 lower); the task makes that decision (`variant_agreement`).
Dynamic quantization is not offered: it ran many times slower than fp32 (docs/benchmarks.md).

`quantize_int8` quantizes a whole graph. A quick classifier's INT8 variant is instead
assembled (`compose.py`) from its quantized frozen backbones (the same for every head, so
kept in the trainer's cache) and its float head, and judged by its out-of-fold accuracy
against fp32's on every cross-validated image (`MAX_INT8_DROP`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from visiondock.modelcard import PRECISION_KEY
from visiondock.vocabulary import INT8

log = logging.getLogger(__name__)
MIN_TOP1_AGREEMENT = 0.99
MAX_MAP50_DROP = 0.01
# A quick classifier's INT8 variant keeps the accuracy when the 95 % interval of its out-of-fold
# accuracy minus fp32's reaches zero and the measured drop is at most this (half a point).
MAX_INT8_DROP = 0.005


@dataclass(frozen=True)
class Int8Settings:
    """How a graph is calibrated and quantized; `bench.int8_folds` measures the choices."""

    calibration_images: int = 32
    per_channel: bool = True  # a scale per output channel of each weight tensor, not one per tensor
    method: str = "minmax"  # activation ranges: "minmax", "percentile" (99.999 %) or "entropy"
    # Convolutions kept in float: "stem" (the first, on the image's pixels), "head" (the last,
    # widest 1x1 convolution before pooling).
    keep_float: tuple[str, ...] = ()

    def recipe(self) -> dict[str, Any]:
        return {"calibration_images": self.calibration_images, "per_channel": self.per_channel,
                "method": self.method, "keep_float": list(self.keep_float)}


# The whole-graph default (detectors, advanced classifiers): MinMax ranges from 32 training images, per-channel
# weights (measured on flowers12, seeds 0 and 1, 16, 32 and 64 images agreed with fp32 on every validation image).
DEFAULT_SETTINGS = Int8Settings()
CALIBRATION_IMAGES = DEFAULT_SETTINGS.calibration_images
# Quick classifiers' frozen backbones, chosen by `make bench-int8` (bench/int8_folds.py: fp32 against INT8
# on the shared sets' folds for each calibration): 128 calibration images and the stem and head convolutions
# in float kept the out-of-fold accuracy where fewer images, every convolution quantized or per-tensor
# weights lost some (the figures: docs/benchmarks.md). Those two convolutions are a small part of Lite0's
# multiply-adds.
CLASSIFIER_INT8 = Int8Settings(calibration_images=128, keep_float=("stem", "head"))
_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, inputs: np.ndarray, batch_size: int = 8) -> None:
        self._feeds = iter([{input_name: inputs[i:i + batch_size]} for i in range(0, len(inputs), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


class _DropQuantizerChatter(logging.Filter):
    # The quantizer logs a line per adjusted weight scale on the root logger: thousands of INFO lines.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and "onnxruntime" in record.pathname)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root = logging.getLogger()
    chatter = _DropQuantizerChatter()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray, *,
                  float_feeding_layer: bool = True, settings: Int8Settings = DEFAULT_SETTINGS) -> Path:
    """Write the INT8 QDQ model of `fp32_path`, calibrated on `calibration` inputs, with the same metadata.

    The nodes that make the outputs stay in float, and with `float_feeding_layer` the layer
    feeding them too; so do the convolutions `settings.keep_float` names.
    """
    source = onnx.load(str(fp32_path))
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="visiondock-int8-") as workdir, _quiet_quantizer():
        prepared = Path(workdir) / "prepared.onnx"
        # Shape inference and graph cleanup first, as ONNX Runtime recommends for static quantization.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        outputs = {output.name for output in graph.output}
        # The nodes that make the outputs (softmax, sigmoid, box decoding, pooling) and the layer feeding
        # them (the classifier's logits) stay in float: quantized outputs would come in steps of 1/255, too
        # coarse for thresholds and box corners, and quantized logits round near-tied classes together.
        final_nodes = [node for node in graph.node if outputs & set(node.output)]
        feeding = {name for node in final_nodes for name in node.input} if float_feeding_layer else set()
        final = [node.name for node in graph.node if node in final_nodes or feeding & set(node.output)]
        convolutions = [node.name for node in graph.node if node.op_type == "Conv"]
        if convolutions:
            final += [convolutions[0]] if "stem" in settings.keep_float else []
            final += [convolutions[-1]] if "head" in settings.keep_float else []
        quantize_static(str(prepared), str(int8_path), _Batches(input_name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=settings.per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=_METHODS[settings.method], nodes_to_exclude=final,
                        extra_options={"CalibTensorRangeSymmetric": False})
    save_variant(onnx.load(str(int8_path)), source, int8_path, INT8)
    return int8_path


def save_variant(variant_model: onnx.ModelProto, source: onnx.ModelProto, path: Path, precision: str) -> None:
    """Save `variant_model` to `path` with the fp32 model's (`source`) metadata, marked as `precision`."""
    del variant_model.metadata_props[:]
    for prop in source.metadata_props:
        entry = variant_model.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    entry = variant_model.metadata_props.add()
    entry.key, entry.value = PRECISION_KEY, precision
    variant_model.producer_name = "visiondock-trainer"
    onnx.save(variant_model, str(path))
