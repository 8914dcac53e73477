"""What a training run is asked to do, and what its steps share while it runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from visiondock.faces import DEFAULT_MARGIN
from visiondock.preprocess import PreprocessSpec
from visiondock.settings import Settings

from .data import ImageLoader, ProjectData
from .flags import DEFAULT_BACKBONE, HEADS, MODES, TASK_PRESETS
from .metrics import DEFAULT_TARGET_PRECISION
from .progress import RunReporter


@dataclass
class TrainingConfig:
    project: str
    model: str | None = None  # defaults to the project id
    backbone: str = DEFAULT_BACKBONE
    # quick: frozen backbone, cached features, a head. advanced: fine-tune the upper blocks too.
    mode: str = "quick"
    task_preset: str | None = None  # "face": find the largest face, identify it, or answer `unknown`
    head: str = "linear"
    test_fraction: float = 0.2
    validation_fraction: float = 0.15
    seed: int = 0
    weight_decay: float | None = None  # None: chosen on the validation split
    epochs: int | None = None  # advanced mode and detection; None: their defaults
    fine_tune_stages: int = 1  # advanced mode: how many of the backbone's last stages learn
    batch_size: int = 32
    learning_rate: float | None = None
    # Precision the `uncertain` (multiclass) or `unknown` (face) threshold must keep on validation.
    target_precision: float = DEFAULT_TARGET_PRECISION
    face_margin: float = DEFAULT_MARGIN
    int8: bool = True  # also try a static INT8 variant (served by default on CPUs)
    detector_input_size: int | None = None  # detection: None = the detector's default
    threads: int | None = None  # CPU threads; None = all cores
    cache_dir: Path | None = None  # None: VISIONDOCK_TRAINER_CACHE_DIR or <home>/feature-cache
    run_id: str | None = None  # a run created beforehand (queued); None: the trainer creates one
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.task_preset is not None and self.task_preset not in TASK_PRESETS:
            raise ValueError(f"unknown task preset {self.task_preset!r}; use one of {', '.join(TASK_PRESETS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; use one of {', '.join(HEADS)}")

    @property
    def model_name(self) -> str:
        return self.model or self.project

    @property
    def cpu_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or Settings().resolved_trainer_cache_dir

    def as_params(self) -> dict[str, Any]:
        skip = {"progress", "run_id", "cache_dir", "threads", "model", "project"}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k not in skip}


@dataclass
class RunContext:
    config: TrainingConfig
    data: ProjectData
    loader: ImageLoader
    reporter: RunReporter
    cache_dir: Path
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainedModel:
    """A trained model ready to export, with its held-out evaluation."""

    task: str
    labels: list[str]
    module: nn.Module  # the graph to export: image → the task's outputs
    preprocess: PreprocessSpec
    output_names: list[str]
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    params: dict[str, Any]
    splits: dict[str, list[str]]
    extra: dict[str, Any]
    # Validation inputs (or test inputs when there is no validation split): parity and INT8 checks.
    check_inputs: np.ndarray
    check_source: str
    # Training inputs for INT8 calibration, made only when asked for.
    calibration_inputs: Callable[[int], np.ndarray]
    # Compares an INT8 session's answers with fp32's on `check_inputs`: {"accepted": bool, ...}.
    int8_agreement: Callable[[Path, Path], dict[str, Any]]
