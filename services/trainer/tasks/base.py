"""The task interface every kind of model the trainer makes goes through.

A task turns a project's labeled images into a model in steps the Job (`job.py`) runs
in order, training and validation kept apart as in Ultralytics' Trainer / Validator /
Exporter split:
- `prepare`: labeled images → the model's inputs and targets, and the split;
- `fit`: train on the training side (validation images may pick the epoch or stop early);
- `validate`: predictions on held-out images → thresholds (chosen on validation) and
  metrics (measured on test), computed in `evaluation.py`;
- `refit` (optional): the same settings fitted again on every labeled image, held-out
  ones included, for the model that is exported; the metrics stay the held-out ones;
- `export_inputs`: what the ONNX export needs (the module, preprocessing, output names,
  what the model card adds, inputs to check the file on), then `export_file` (by default
  the module exported) and `check_export` (by default `check_parity` against torch);
- the variants: `int8_model` (by default the whole graph calibrated on
  `calibration_inputs`), `fp16_model`, and `variant_agreement`, which decides whether a
  variant file is registered.

Each task passes its own data and model types between the steps (subclasses of
`Prepared` and `Fitted`); the Job reads only their common fields, so it has no branch
for any task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from PIL import Image
from torch import nn

from visiondock.modelcard import ModelCard
from visiondock.preprocess import PreprocessSpec, to_tensor
from visiondock.vocabulary import AUTO, DEFAULT_BACKBONE

from ..data import ImageLoader, ImageRecord, ProjectData
from ..export import export_onnx
from ..half_precision import convert_fp16
from ..options import TrainingOptions
from ..quantize import quantize_int8
from ..splits import Split
from ..steps import RunSteps

# Images the export is checked on: parity (torch against ONNX Runtime) and INT8 agreement.
PARITY_IMAGES = 16


@dataclass
class RunContext:
    """What the steps of one run share."""

    options: TrainingOptions
    project: ProjectData
    loader: ImageLoader
    steps: RunSteps
    cache_dir: Path

    @property
    def report(self) -> dict[str, Any]:
        return self.steps.report


@dataclass
class Prepared:
    """A task's data after `prepare`: the labels (output order) and the split of the usable images."""

    labels: list[str]
    records: list[ImageRecord]  # the images the split's indices point into
    split: Split

    def split_ids(self) -> dict[str, list[str]]:
        return self.split.ids(self.records)


@dataclass
class Fitted:
    """A task's model after `fit`."""

    # Per epoch (or optimizer pass): train_loss, train_metric, val_loss, val_metric...
    history: list[dict[str, Any]]
    # What fitting chose or found (weight decay, best epoch...), stored with the version.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Validation:
    thresholds: dict[str, float]  # chosen on validation (or out-of-fold) predictions; the model card carries them
    metrics: dict[str, Any]  # measured on test images (or out-of-fold predictions)
    # Likely label errors (classification), ranked; stored with the version beside its files.
    label_issues: list[dict[str, Any]] | None = None


@dataclass
class ExportInputs:
    module: nn.Module | None  # the graph to export (image → the task's outputs); None where `export_file` assembles it
    preprocess: PreprocessSpec
    output_names: list[str]
    card_extra: dict[str, Any]  # what the model card says beyond task, labels, thresholds
    # Validation inputs (test inputs when there are no validation images) the export is checked on.
    check_inputs: np.ndarray
    check_source: str
    # What the fp32 model answers on check_inputs, where the task already knows it (quick
    # classification: the head on the cached features); else the INT8 check runs the fp32 file.
    check_expected: np.ndarray | None = None
    # The task's fitted model, for the variant checks that judge it on more than the check inputs.
    fitted: Any = None


DataT = TypeVar("DataT", bound=Prepared)
ModelT = TypeVar("ModelT", bound=Fitted)


class Task(ABC, Generic[DataT, ModelT]):
    name: ClassVar[str]  # the model card's task
    prepare_stage: ClassVar[str]  # the stage a run reports while `prepare` runs

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.options = run.options
        # The backbone the model is built on: the one asked for, or for `auto` the default until a
        # task that chooses (quick classification) has chosen.
        self.backbone = DEFAULT_BACKBONE if self.options.backbone == AUTO else self.options.backbone

    @abstractmethod
    def prepare(self) -> DataT: ...

    @abstractmethod
    def fit(self, data: DataT) -> ModelT: ...

    @abstractmethod
    def validate(self, data: DataT, model: ModelT) -> Validation: ...

    def refit(self, data: DataT, model: ModelT) -> ModelT | None:
        """The model fitted again on every labeled image with the settings `fit` chose, once
        `validate` has measured it; None where the task does not (the model stays as fitted)."""
        return None

    @abstractmethod
    def export_inputs(self, data: DataT, model: ModelT) -> ExportInputs: ...

    def export_file(self, data: DataT, model: ModelT, exported: ExportInputs, card: ModelCard, path: Path) -> Path:
        """Write the fp32 ONNX file with its model card: by default `exported.module` exported."""
        assert exported.module is not None
        return export_onnx(exported.module, card, path)

    def check_export(self, exported: ExportInputs, path: Path, card: ModelCard, images: int) -> dict[str, Any]:
        """Check the written file on the first `images` check inputs; raise ParityError when it is wrong."""
        assert exported.module is not None
        return self.check_parity(exported.module, path, exported.check_inputs[:images], card)

    @abstractmethod
    def check_parity(self, module: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
        """Compare the exported file with torch on `inputs`; raise ParityError when they disagree."""

    @abstractmethod
    def calibration_inputs(self, data: DataT, exported: ExportInputs) -> np.ndarray:
        """Training inputs to calibrate INT8 quantization on."""

    def int8_model(self, data: DataT, model: ModelT, exported: ExportInputs, fp32_path: Path,
                   int8_path: Path) -> Path:
        """Write the INT8 variant of the exported fp32 file to `int8_path`."""
        return quantize_int8(fp32_path, int8_path, self.calibration_inputs(data, exported))

    def fp16_model(self, fp32_path: Path, fp16_path: Path) -> Path:
        """Write the fp16 variant of the exported fp32 file to `fp16_path`."""
        return convert_fp16(fp32_path, fp16_path)

    @abstractmethod
    def variant_agreement(self, data: DataT, exported: ExportInputs, validation: Validation, fp32_path: Path,
                          variant_path: Path, variant: str) -> dict[str, Any]:
        """How a variant file (`variant`: "int8", "fp16") answers compared with fp32 on the check inputs:
        {"accepted": bool, ...}."""


def input_tensors(images: Sequence[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """Images as the model's input batch [N, 3, S, S], preprocessed as the scoring service does."""
    if not images:
        return np.zeros((0, 3, spec.size, spec.size), dtype=np.float32)
    return np.stack([to_tensor(image, spec) for image in images])
