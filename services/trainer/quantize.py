"""Static INT8 quantization (QDQ, per-channel weights) calibrated on training images.

The INT8 file is a variant of a version, registered only when it answers like the
fp32 model on validation images (classifiers: top-1 agreement ≥ 99 %; detectors:
mAP@0.5 no more than 0.01 lower); the caller makes that decision from `agreement`.
Dynamic quantization is not offered: measured here it ran 15x slower than fp32.

`quantize_int8` quantizes a whole graph. A classifier on a frozen backbone is instead
put together by `compose_int8` from the quantized backbone (the same for every head,
so kept in the trainer's cache) and its float head.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import compose
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
# MinMax ranges from 32 training images: measured on flowers12 (seeds 0, 1) the INT8 model agreed with
# fp32 on every validation image with 16, 32 and 64, and 32 takes 0.7 s less than 64 (the calibration pass
# runs an unoptimized copy of the model that outputs every tensor).
CALIBRATION_IMAGES = 32
MIN_TOP1_AGREEMENT = 0.99
MAX_MAP50_DROP = 0.01


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
                  float_feeding_layer: bool = True) -> Path:
    """Write the INT8 QDQ model of `fp32_path`, calibrated on `calibration` inputs, with the same metadata.

    The nodes that make the outputs stay in float, and with `float_feeding_layer` the layer
    feeding them too.
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
        quantize_static(str(prepared), str(int8_path), _Batches(input_name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=final, extra_options={"CalibTensorRangeSymmetric": False})
    save_variant(onnx.load(str(int8_path)), source, int8_path, INT8)
    return int8_path


def compose_int8(backbone_int8: Path, head_fp32: Path, fp32_path: Path, int8_path: Path) -> Path:
    """Write the INT8 variant of `fp32_path` made of a quantized backbone (image → features) and a
    float head (features → outputs), with the fp32 model's metadata and input name. The backbone's
    output and the head's input share a name, and the head's outputs are the served ones."""
    backbone = onnx.load(str(backbone_int8))
    head = onnx.load(str(head_fp32))
    served = onnx.load(str(fp32_path))
    served_input = served.graph.input[0].name
    own_input = backbone.graph.input[0].name
    backbone.graph.input[0].name = served_input
    for node in backbone.graph.node:
        node.input[:] = [served_input if name == own_input else name for name in node.input]
    head.ir_version = backbone.ir_version  # the quantizer may raise it; the float head is valid under it
    # Every inner name of the head is prefixed: both graphs come from the same exporter's numbering.
    head = compose.add_prefix(head, "head/", rename_inputs=False, rename_outputs=False)
    features = backbone.graph.output[0].name
    merged = compose.merge_models(backbone, head, io_map=[(features, head.graph.input[0].name)])
    onnx.checker.check_model(merged)
    save_variant(merged, served, int8_path, INT8)
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
