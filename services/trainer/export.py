"""ONNX export with the model card in its metadata, checked against torch."""

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

OPSET = 17


class ParityError(RuntimeError):
    """The exported file does not compute what the torch model computes."""


def export_onnx(model: nn.Module, card: ModelCard, path: Path) -> Path:
    size = card.preprocess.size
    dummy = torch.zeros(1, 3, size, size)
    model.eval()
    # The TorchScript exporter: the dynamo one wants opset 18 and onnxscript.
    with warnings.catch_warnings():
        # "Constant folding not applied" for the padding slices: harmless, and noise in a Job's log.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            model, (dummy,), str(path), input_names=[card.input_name], output_names=card.output_names,
            dynamic_axes={card.input_name: {0: "batch"}, **{name: {0: "batch"} for name in card.output_names}},
            opset_version=OPSET, dynamo=False,
        )
    proto = onnx.load(str(path))
    for key, value in card.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "visiondock-trainer"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def check_parity(model: nn.Module, path: Path, inputs: np.ndarray, *, tolerance: float = 1e-3) -> dict[str, Any]:
    """Run the same inputs through torch and ONNX Runtime; raise ParityError if they disagree."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    with torch.inference_mode():
        expected = model(torch.from_numpy(inputs)).numpy()
    actual = session.run(None, {input_name: inputs})[0]
    max_abs = float(np.abs(expected - actual).max()) if len(inputs) else 0.0
    agreement = float((expected.argmax(1) == actual.argmax(1)).mean()) if len(inputs) else 1.0
    report = {"max_abs_diff": max_abs, "top1_agreement": agreement, "checked": len(inputs)}
    if max_abs > tolerance or agreement < 1.0:
        raise ParityError(f"ONNX export differs from torch: max |diff| {max_abs:.2e}, top-1 agreement "
                          f"{agreement:.3f}; nothing was registered")
    return report
