"""The fp16 variant of a version: float16 weights and arithmetic, float32 inputs and outputs.

On a GPU, ONNX Runtime runs float16 convolutions on the tensor cores at half the memory
traffic; the scoring service times it against the fp32 file when a version loads on a
GPU and serves the faster (`services/scoring/variant_policy.py`). On a CPU it is slower than
fp32 (docs/benchmarks.md), so the service never picks it there by itself.

The file is registered only when it answers like the fp32 model on validation images,
by the same bars as the INT8 variant (`quantize.MIN_TOP1_AGREEMENT`, `MAX_MAP50_DROP`).
The conversion is ONNX Runtime's own (`onnxruntime.transformers.float16`): it keeps in
float32 the operators that float16 would break and puts casts at the inputs and outputs,
so a client sends and receives what it does with the fp32 file.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel

from visiondock.vocabulary import FP16

from .quantize import save_variant


def convert_fp16(fp32_path: Path, fp16_path: Path) -> Path:
    """Write the fp16 variant of `fp32_path` to `fp16_path`, with the same metadata."""
    source = onnx.load(str(fp32_path))
    # The converter changes the graph it is given: work on a copy, the metadata come from `source`.
    half = convert_float_to_float16(onnx.ModelProto.FromString(source.SerializeToString()), keep_io_types=True)
    OnnxModel(half).topological_sort()  # the converter appends the input casts after the nodes that read them
    onnx.checker.check_model(half)
    save_variant(half, source, fp16_path, FP16)
    return fp16_path
