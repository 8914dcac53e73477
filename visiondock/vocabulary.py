"""The words VisionDock's services, trainer and command line share, spelled once.

Project types, model tasks, the special `unknown` label, backbones, training modes,
heads and the variants of a version's model file. Plain constants (no torch, no service
imports): the annotation service's schemas, the scoring service's answers, the model
card, the registry, the CLI and the trainer all read them from here.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# -- project types: what a project's labels are ------------------------------------------
MULTICLASS: Final = "multiclass"  # one tag per image
MULTILABEL: Final = "multilabel"  # any number of tags per image
DETECTION: Final = "detection"  # boxes, each with a tag
PROJECT_TYPES: Final = (MULTICLASS, MULTILABEL, DETECTION)
# The same three as a type, for pydantic schemas (a Literal cannot be built from the names).
ProjectType = Literal["multiclass", "multilabel", "detection"]
assert get_args(ProjectType) == PROJECT_TYPES

# -- task presets and model tasks -----------------------------------------------------------
# A preset trains a multiclass project for a special purpose. `face`: find the largest face,
# identify the person, or answer `unknown`.
FACE: Final = "face"
TASK_PRESETS: Final = (FACE,)
# What a model does, as its model card says: a project type, or the preset it was trained with.
MODEL_TASKS: Final = (*PROJECT_TYPES, FACE)
CLASSIFICATION_TASKS: Final = (MULTICLASS, MULTILABEL, FACE)
# The project type each task's models learn from, so whose labels their answers propose.
PROJECT_TYPE_OF_TASK: Final = {MULTICLASS: MULTICLASS, MULTILABEL: MULTILABEL, DETECTION: DETECTION, FACE: MULTICLASS}
assert set(PROJECT_TYPE_OF_TASK) == set(MODEL_TASKS)

# The label of people (face preset) a model must not name: tuned and tested, never trained on;
# the scoring service answers it below the `unknown` threshold.
UNKNOWN_LABEL: Final = "unknown"

# -- training choices ----------------------------------------------------------------------
BACKBONES: Final = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
DEFAULT_BACKBONE: Final = "efficientnet-lite0"
# quick: frozen backbone, cached features, a head; advanced: also fine-tune the upper blocks.
QUICK: Final = "quick"
ADVANCED: Final = "advanced"
MODES: Final = (QUICK, ADVANCED)
LINEAR: Final = "linear"
MLP: Final = "mlp"
HEADS: Final = (LINEAR, MLP)
# How a run estimates its metrics and thresholds: on held-out images, or by k-fold
# cross-validation over every image (few images per class); auto picks.
HELD_OUT: Final = "held-out"
CROSS_VALIDATION: Final = "cross-validation"
AUTO: Final = "auto"
EVALUATIONS: Final = (AUTO, HELD_OUT, CROSS_VALIDATION)

# -- a version's files -----------------------------------------------------------------------
# The fp32 `model.onnx`, and variant files beside it (`model.<variant>.onnx`): INT8 (static
# quantization) for CPUs, fp16 (float16 weights and arithmetic, float32 inputs and outputs) for GPUs.
FP32: Final = "fp32"
INT8: Final = "int8"
FP16: Final = "fp16"
VARIANTS: Final = (INT8, FP16)
