"""Pooled features of a project's images for every backbone pass a quick classifier needs, cached.

A pass (`selection.FeaturePass`) is one frozen backbone over every image: at its own input size,
or resized inside its graph from a larger one (an ensemble member), on the image or on its
mirror image. Its graph (image → pooled features) is exported to the trainer's cache once and
is also what the exported classifier is assembled from (`compose.py`), so the features the
head learned from are the ones the served file computes. The INT8 variant's passes run the
quantized graphs the same way, and their features are cached beside the fp32 ones.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from visiondock.faces import detector_card
from visiondock.preprocess import PreprocessSpec, to_tensor

from .backbone import PooledFeatures, backbone_spec, default_preprocess, load_pretrained
from .cache_budget import mark_used
from .data import ImageLoader, ImageRecord
from .features import CACHE_FORMAT, FeatureCache, FrozenRunner, atomic_write, recipe_hash, run_batched
from .image_inputs import ImageInputs
from .selection import FeaturePass

log = logging.getLogger(__name__)
OPSET = 17


class Resized(nn.Module):
    """Bilinear resize to `size`, then the inner module: an ensemble member fed the ensemble's larger input."""

    def __init__(self, inner: nn.Module, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.size = size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.inner(F.interpolate(images, size=(self.size, self.size), mode="bilinear",
                                                          align_corners=False))
        return features


def export_frozen(build: Callable[[], nn.Module], path: Path, input_size: int) -> Path:
    """The frozen module's ONNX file (input `image`, output `output`, batch dynamic): exported once per cache."""
    if path.exists():
        mark_used(path)
        return path
    log.info("exporting the frozen backbone to %s (once per cache directory)", path)
    module = build().eval()

    def export(target: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about the padding arithmetic
            torch.onnx.export(module, (torch.zeros(1, 3, input_size, input_size),), str(target),
                              input_names=["image"], output_names=["output"],
                              dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)

    atomic_write(path, export)
    return path


def pass_spec(feature_pass: FeaturePass) -> PreprocessSpec:
    """The preprocessing of the images a pass reads: its backbone's, or the larger input it resizes from."""
    if feature_pass.input_size is None:
        return default_preprocess(feature_pass.backbone)
    return PreprocessSpec(size=feature_pass.input_size, resize=round(feature_pass.input_size / 0.875))


class OnnxRunner:
    """An ONNX file run on CPU by ONNX Runtime, batch in, first output out (the INT8 backbones)."""

    def __init__(self, path: Path, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        features: np.ndarray = self.session.run(None, {self.input: batch})[0]
        return features


class FeatureSets:
    """Each pass's features of the images, computed once and kept in the trainer's feature cache."""

    def __init__(self, loader: ImageLoader, cache_dir: Path, *, threads: int, progress: bool,
                 face_margin: float | None, report: dict[str, Any]) -> None:
        self.loader = loader
        self.cache_dir = cache_dir
        self.threads = threads
        self.progress = progress
        self.face_margin = face_margin
        self.report = report
        self._inputs: dict[int, ImageInputs] = {}
        self.features: dict[FeaturePass, dict[str, np.ndarray]] = {}

    @property
    def crop(self) -> dict[str, Any] | None:
        """How a face preset crops its inputs (part of what cached computations are keyed by)."""
        return detector_card(self.face_margin) if self.face_margin is not None else None

    def inputs(self, spec: PreprocessSpec) -> ImageInputs:
        """The decoded inputs for a preprocessing (face crops do not depend on it: one set for all)."""
        key = 0 if self.face_margin is not None else spec.size
        if key not in self._inputs:
            self._inputs[key] = ImageInputs(self.loader, spec, cache_dir=self.cache_dir,
                                            face_margin=self.face_margin, progress=self.progress)
        return self._inputs[key]

    def graph_path(self, feature_pass: FeaturePass) -> Path:
        spec = pass_spec(feature_pass)
        part = "pooled" if feature_pass.input_size is None else f"pooled-from{feature_pass.input_size}"
        return self.cache_dir / "models" / f"{feature_pass.backbone}-{part}-{spec.size}-f{CACHE_FORMAT}.onnx"

    def _build(self, feature_pass: FeaturePass) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            pooled = PooledFeatures(load_pretrained(feature_pass.backbone))
            if feature_pass.input_size is None:
                return pooled
            return Resized(pooled, backbone_spec(feature_pass.backbone).image_size)

        return build

    def graph(self, feature_pass: FeaturePass) -> Path:
        """The pass's frozen graph file (image → pooled features), without the mirroring."""
        unmirrored = FeaturePass(feature_pass.backbone, False, feature_pass.input_size)
        return export_frozen(self._build(unmirrored), self.graph_path(unmirrored), pass_spec(unmirrored).size)

    def recipe(self, feature_pass: FeaturePass, *, int8: str | None = None) -> dict[str, Any]:
        # A plain pass keeps the recipe features were cached under before mirrored and resized passes existed.
        recipe: dict[str, Any] = {"backbone": feature_pass.backbone, "preprocess": pass_spec(feature_pass).to_json(),
                                  "crop": self.crop}
        if feature_pass.mirrored:
            recipe["mirrored"] = True
        if feature_pass.input_size is not None:
            recipe["resized_from"] = feature_pass.input_size
        if int8 is not None:
            recipe["int8"] = int8
        return recipe

    def compute(self, feature_pass: FeaturePass, records: Sequence[ImageRecord]) -> dict[str, np.ndarray]:
        """The pass's features of every record that can train (read, and with a face for the face preset)."""
        if feature_pass in self.features:
            return self.features[feature_pass]
        spec = pass_spec(feature_pass)
        unmirrored = FeaturePass(feature_pass.backbone, False, feature_pass.input_size)

        def runner() -> Callable[[np.ndarray], np.ndarray]:
            return FrozenRunner(self._build(unmirrored), input_size=spec.size, threads=self.threads,
                                onnx_path=self.graph_path(unmirrored))

        vectors = self._run(feature_pass, records, runner, self.recipe(feature_pass),
                            f"compute features ({feature_pass.backbone}{' mirrored' if feature_pass.mirrored else ''})")
        self.features[feature_pass] = vectors
        return vectors

    def compute_int8(self, feature_pass: FeaturePass, graph: Path,
                     records: Sequence[ImageRecord]) -> dict[str, np.ndarray]:
        """The features an INT8 graph of the pass gives the records (cached by the graph's file name, which
        names its recipe)."""
        return self._run(feature_pass, records, lambda: OnnxRunner(graph, self.threads),
                         self.recipe(feature_pass, int8=graph.name), f"INT8 features ({feature_pass.backbone})",
                         counted=False)

    def _run(self, feature_pass: FeaturePass, records: Sequence[ImageRecord],
             runner: Callable[[], Callable[[np.ndarray], np.ndarray]], recipe: dict[str, Any], desc: str, *,
             counted: bool = True) -> dict[str, np.ndarray]:
        spec = pass_spec(feature_pass)
        inputs = self.inputs(spec)
        cache = FeatureCache(self.cache_dir, recipe)
        if inputs.face:
            inputs.find_faces(records)
        unreadable = {item["id"] for item in self.loader.skipped}
        candidates = [r for r in records if r.id not in unreadable and inputs.has_input(r)]
        vectors = {r.id: v for r in candidates if (v := cache.get(r.id)) is not None}
        missing = [r for r in candidates if r.id not in vectors]
        computed = 0
        if missing:
            images = inputs.get(missing)
            ready = [(r, img) for r, img in zip(missing, images, strict=True) if img is not None]
            mirrored = feature_pass.mirrored

            def prepare(image: Any) -> np.ndarray:
                tensor = to_tensor(image, spec)
                return np.ascontiguousarray(tensor[:, :, ::-1]) if mirrored else tensor

            output = run_batched(runner(), [img for _, img in ready], prepare, desc=desc, progress=self.progress)
            for (record, _), vector in zip(ready, output, strict=True):
                cache.put(record.id, vector)
                vectors[record.id] = vector
            computed = len(ready)
        if counted:
            counts = self.report.setdefault("features", {"computed": 0, "cached": 0})
            counts["computed"] += computed
            counts["cached"] += len(vectors) - computed
        log.info("%s: %d computed, %d from the cache", desc, computed, len(vectors) - computed)
        return vectors


def int8_recipe_name(feature_pass: FeaturePass, recipe: dict[str, Any]) -> str:
    """The cached INT8 graph's file name: the pass and a hash of everything it was made from."""
    part = "pooled" if feature_pass.input_size is None else f"pooled-from{feature_pass.input_size}"
    return f"{feature_pass.backbone}-{part}-int8-{recipe_hash(recipe)}.onnx"
