"""What an exported model says about itself, stored in the ONNX file's metadata.

The trainer writes a `ModelCard` into `metadata_props`; the scoring service reads it
back with ONNX Runtime (`custom_metadata_map`) and needs nothing else to serve the
file: the task, the label order of the output, preprocessing and thresholds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from visiondock.preprocess import PreprocessSpec
from visiondock.vocabulary import MODEL_TASKS

METADATA_PREFIX = "visiondock."
FORMAT_VERSION = "1"
# Stamped by the trainer on a version's variant files ("int8", "fp16"); absent on fp32 files.
PRECISION_KEY = METADATA_PREFIX + "precision"


class ModelCardError(ValueError):
    """The model file lacks the metadata VisionDock needs to serve it."""


@dataclass(frozen=True)
class ModelCard:
    task: str
    labels: list[str]
    preprocess: PreprocessSpec
    backbone: str
    input_name: str = "image"
    output_names: list[str] = field(default_factory=lambda: ["probabilities"])
    # Below the best probability's threshold an answer is flagged uncertain; per-label
    # thresholds decide which tags a multilabel answer lists.
    thresholds: dict[str, float] = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in MODEL_TASKS:
            raise ModelCardError(f"unknown task {self.task!r}; expected one of {', '.join(MODEL_TASKS)}")
        if not self.labels:
            raise ModelCardError("a model card needs at least one label")

    def to_metadata(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "task": self.task,
            "labels": json.dumps(self.labels),
            "preprocess": self.preprocess.to_json(),
            "backbone": self.backbone,
            "input_name": self.input_name,
            "output_names": json.dumps(self.output_names),
            "thresholds": json.dumps(self.thresholds),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "extra": json.dumps(self.extra),
        }
        return {METADATA_PREFIX + key: str(value) for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ModelCard:
        def value(key: str) -> str:
            try:
                return metadata[METADATA_PREFIX + key]
            except KeyError:
                raise ModelCardError(f"model file has no '{METADATA_PREFIX}{key}' metadata; "
                                     "was it exported by the VisionDock trainer?") from None

        try:
            return cls(
                task=value("task"),
                labels=list(json.loads(value("labels"))),
                preprocess=PreprocessSpec.from_json(value("preprocess")),
                backbone=value("backbone"),
                input_name=value("input_name"),
                output_names=list(json.loads(value("output_names"))),
                thresholds={k: float(v) for k, v in json.loads(value("thresholds")).items()},
                model_name=metadata.get(METADATA_PREFIX + "model_name", ""),
                model_version=metadata.get(METADATA_PREFIX + "model_version", ""),
                extra=json.loads(metadata.get(METADATA_PREFIX + "extra", "{}")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ModelCardError):
                raise
            raise ModelCardError(f"model file metadata is malformed: {exc}") from None
