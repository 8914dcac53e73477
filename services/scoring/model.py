"""A loaded model: an ONNX Runtime session and the model card read from the file itself."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from visiondock.modelcard import ModelCard
from visiondock.preprocess import to_tensor


def available_providers() -> list[str]:
    """CUDA first where the GPU build of ONNX Runtime and a GPU are present, then CPU."""
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    present = set(ort.get_available_providers())
    return [p for p in preferred if p in present]


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


class LoadedModel:
    def __init__(self, path: Path, *, name: str, version: int, sha256: str, intra_op_threads: int = 0) -> None:
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=available_providers())
        self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.loaded_at = time.time()

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "task": self.card.task, "labels": self.card.labels,
                "backbone": self.card.backbone, "provider": self.provider, "sha256": self.sha256}

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([to_tensor(image, self.card.preprocess) for image in images])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.card.input_name: batch})[0]

    def top_k(self, probabilities: np.ndarray, k: int) -> list[list[Prediction]]:
        order = np.argsort(-probabilities, axis=1)[:, :k]
        return [[Prediction(self.card.labels[j], float(row[j])) for j in idx]
                for row, idx in zip(probabilities, order, strict=True)]

    def warm_up(self) -> None:
        """One inference so the first real request does not pay for lazy initialisation."""
        size = self.card.preprocess.size
        self.infer(np.zeros((1, 3, size, size), dtype=np.float32))
