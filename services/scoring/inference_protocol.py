"""Open Inference Protocol (KServe / Triton "v2") over JSON: tensors in, tensors out.

The input is the model's preprocessed FP32 tensor (N x 3 x S x S, as `to_tensor` makes
it); the outputs are the card's outputs as FP32 tensors. Data may be flat (row-major)
or nested lists. Errors are `{"error": "..."}` (the protocol's shape) with our usual
`detail` and `code` beside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from visiondock.errors import InvalidInput
from visiondock.limits import loads_bounded

from .model import LoadedModel

PLATFORM = "onnxruntime_onnx"
MAX_INFER_ROWS = 256


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    shapes = model.output_shapes()
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": PLATFORM,
        "inputs": [{"name": model.card.input_name, "datatype": "FP32", "shape": [-1, 3, *model.input_shape]}],
        "outputs": [{"name": name, "datatype": "FP32", "shape": shapes.get(name, [-1])}
                    for name in model.output_names],
        "parameters": {"task": model.task, "labels": model.card.labels, "alias": model.identity.alias,
                       "variant": model.identity.variant},
    }


def parse_infer_request(body: bytes, model: LoadedModel) -> tuple[np.ndarray, list[str], str | None]:
    """(input tensor, requested output names, request id) from a JSON infer request; 400 when malformed."""
    payload = loads_bounded(body, max_depth=None)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise InvalidInput('an infer request is {"inputs": [{"name", "shape", "datatype", "data"}]}')
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string")
    inputs = payload["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f"this model takes exactly one input, {model.card.input_name!r}")
    tensor = inputs[0]
    if tensor.get("name") != model.card.input_name:
        raise InvalidInput(f"unknown input {tensor.get('name')!r}; the model's input is {model.card.input_name!r}")
    if tensor.get("datatype") != "FP32":
        raise InvalidInput(f"input datatype must be FP32, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    size = model.card.preprocess.size
    if (not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(d, int) for d in shape)
            or shape[1:] != [3, size, size] or not 1 <= shape[0] <= MAX_INFER_ROWS):
        raise InvalidInput(f"input shape must be [N, 3, {size}, {size}] with 1 <= N <= {MAX_INFER_ROWS}; "
                         f"got {shape!r}")
    data = tensor.get("data")
    expected = math.prod(shape)
    if not isinstance(data, list):
        raise InvalidInput("input data must be a list of numbers (flat or nested)")
    # Checked before converting: the outer length must fit the shape, flat or nested.
    if len(data) not in (expected, shape[0]):
        raise InvalidInput(f"input data holds {len(data)} values (or rows); shape {shape} needs {expected} values "
                           f"or {shape[0]} rows")
    try:
        array = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        raise InvalidInput("input data must hold only numbers, nested evenly") from None
    if array.size != expected:
        raise InvalidInput(f"input data holds {array.size} values; shape {shape} needs {expected}")
    if not np.isfinite(array).all():
        raise InvalidInput("input data holds NaN or infinite values")
    outputs = payload.get("outputs")
    names = list(model.output_names)
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise InvalidInput('outputs must be a list of {"name": ...}')
        names = [o.get("name") for o in outputs]
        unknown = [n for n in names if n not in model.output_names]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model has {model.output_names}")
    return np.ascontiguousarray(array.reshape(shape)), names, request_id


def infer_response(model: LoadedModel, outputs: list[np.ndarray], names: list[str],
                   request_id: str | None) -> dict[str, Any]:
    by_name = dict(zip(model.output_names, outputs, strict=True))
    body: dict[str, Any] = {
        "model_name": model.name,
        "model_version": str(model.version),
        "outputs": [{"name": name, "datatype": "FP32", "shape": list(by_name[name].shape),
                     "data": by_name[name].astype(np.float32).ravel().tolist()} for name in names],
    }
    if request_id is not None:
        body["id"] = request_id
    return body
