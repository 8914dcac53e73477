"""The training options people choose, as command-line flags (no torch import).

Shared by `python -m services.trainer` and `visiondock train`, so both offer the same
choices and the CLI starts fast even where the trainer extra is not installed.
"""

from __future__ import annotations

import argparse
from typing import Any

MODES = ("quick", "advanced")
TASK_PRESETS = ("face",)
HEADS = ("linear", "mlp")
BACKBONE_NAMES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
DEFAULT_BACKBONE = "efficientnet-lite0"


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", default="quick", choices=MODES,
                        help="quick: frozen backbone, cached features, a head (seconds); advanced: also "
                             "fine-tune the upper backbone blocks with augmentation (minutes)")
    parser.add_argument("--task-preset", choices=TASK_PRESETS,
                        help="face (multiclass project, one tag per person, `unknown` for people to reject): "
                             "find the largest face, identify it, or answer `unknown`")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=BACKBONE_NAMES)
    parser.add_argument("--head", default="linear", choices=HEADS, help="classifier head on the features")
    parser.add_argument("--epochs", type=int, help="advanced mode and detection (default: theirs)")
    parser.add_argument("--fine-tune-stages", type=int, default=1,
                        help="advanced mode: how many of the backbone's last stages are fine-tuned")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="also register a static INT8 variant when it agrees with fp32 on validation "
                             "(default: on; the scoring service serves it on CPUs)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of each class held out for testing when the project sets no split")
    parser.add_argument("--validation-fraction", type=float, default=0.15,
                        help="share of the training side used to choose thresholds and stop early")
    parser.add_argument("--seed", type=int, default=0)


def training_values(args: argparse.Namespace) -> dict[str, Any]:
    """TrainingConfig fields from parsed flags."""
    return {"project": args.project, "model": args.model, "mode": args.mode, "task_preset": args.task_preset,
            "backbone": args.backbone, "head": args.head, "epochs": args.epochs,
            "fine_tune_stages": args.fine_tune_stages, "int8": args.int8,
            "test_fraction": args.test_fraction, "validation_fraction": args.validation_fraction,
            "seed": args.seed}
