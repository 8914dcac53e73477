"""Every training option, defined once: `TrainingOptions`.

Each field carries its type, default, help, choices and the tasks and modes it applies
to. From the fields come
- the flags of `python -m services.trainer` and of `visiondock train`:
  `TrainingOptions.add_arguments(parser)` then `TrainingOptions.from_args(args)`;
- the Job's command line: `options.to_argv()` (what a Kubernetes Job runs);
- the parameters a run stores: `options.params()`.

An option set (to a value other than its default) where it does nothing is refused
with `OptionError`, never dropped: at once when no task could use it
(`--fine-tune-stages` in quick mode, `--face-margin` without the face preset), else when
the project's type is known (`check_applies`: `--head mlp` on a detection project).
Defaults that differ by task (`--epochs`: 10 in advanced mode, 60 for detection) are
declared here too (`scoped_default`), and the fine-tuning and detector options take
theirs from here.

To add an option, add a field: `name: type = option(default, "help", tasks=..., modes=...)`.
It is then a flag of both command lines (`--name`), part of `to_argv()` and `params()`,
and refused where it does not apply; the task that uses it reads `options.name`.

Knobs that are not options (the detector's architecture, augmentation strengths,
patience, the MLP head's size, the INT8 acceptance bars, batch sizes of frozen
inference) are constants beside the code they tune: chosen by the benchmarks, not per
run. Torch-free, so the CLI starts fast where the trainer extra is not installed.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from visiondock.settings import Settings, available_cpus
from visiondock.vocabulary import (
    ADVANCED,
    AUTO,
    BACKBONES,
    CLASSIFICATION_TASKS,
    DEFAULT_BACKBONE,
    DETECTION,
    EVALUATIONS,
    FACE,
    HEADS,
    MODEL_TASKS,
    MODES,
    MULTICLASS,
    PROJECT_TYPES,
    QUICK,
    TASK_PRESETS,
)

# What an option is about: which project and model (identity), how to train (training:
# stored with the run, refused where it does not apply), or how this process runs (runtime).
Kind = Literal["identity", "training", "runtime"]
_SPEC = "visiondock.option"


# Backbone passes over the images that quick mode's candidates may take, counted in EfficientNet-Lite0
# images (Lite1 1.45, Lite2 2.0, a mirrored view as much again): every backbone and view for 200 images,
# Lite0 plain and mirrored for 720. A count of the data, not of the machine: the same images get the
# same candidates.
SELECTION_BUDGET = 2000.0


class OptionError(ValueError):
    """A training option that is invalid, or set where it does nothing; the message says which."""


@dataclass(frozen=True)
class OptionSpec:
    help: str
    kind: Kind = "training"
    choices: tuple[Any, ...] | None = None
    # The model tasks it applies to, and (for classification tasks) the modes.
    tasks: tuple[str, ...] = MODEL_TASKS
    modes: tuple[str, ...] = MODES
    # Defaults by scope (a classification mode, or "detection") where the field's default is None.
    scoped: dict[str, Any] = field(default_factory=dict)
    # A boolean whose default is True is set off by this flag (e.g. --no-progress).
    off_flag: str | None = None
    metavar: str | None = None

    def applies(self, task: str, mode: str) -> bool:
        return task in self.tasks and (task == DETECTION or mode in self.modes)

    def scope(self) -> str:
        """Where it applies, in words: 'classification in advanced mode and detection'."""
        parts = []
        classification = [t for t in CLASSIFICATION_TASKS if t in self.tasks]
        if classification:
            words = "classification" if len(classification) == len(CLASSIFICATION_TASKS) else \
                " and ".join("the face preset" if t == FACE else t for t in classification)
            if self.modes != MODES:
                words += f" in {' or '.join(self.modes)} mode"
            parts.append(words)
        if DETECTION in self.tasks:
            parts.append("detection")
        return " and ".join(parts)


def option(default: Any, help: str, **spec: Any) -> Any:
    """A `TrainingOptions` field: its default, and what `OptionSpec` says about it."""
    return field(default=default, metadata={_SPEC: OptionSpec(help=help, **spec)})


def _spec(name: str) -> OptionSpec:
    spec = _fields()[name].metadata[_SPEC]
    assert isinstance(spec, OptionSpec)  # every field is declared through `option`
    return spec


def _fields() -> dict[str, Any]:
    return {f.name: f for f in fields(TrainingOptions)}


def scoped_default(name: str, scope: str) -> Any:
    """The default of option `name` in `scope` (ADVANCED or DETECTION): e.g. the detector's epochs."""
    return _spec(name).scoped[scope]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_input_size(size: int) -> None:
    if size % 32 or size < 64:
        raise OptionError(f"the input size must be a multiple of 32 and at least 64, got {size}")


@dataclass(frozen=True)
class TrainingOptions:
    project: str = option(MISSING, "the project id to train from", kind="identity")
    model: str | None = option(None, "register under this name (default: the project id)", kind="identity")

    mode: str = option(QUICK, "quick: frozen backbone, cached features, a head (seconds); advanced: also fine-tune "
                              "the upper backbone blocks with augmentation (minutes)",
                       choices=MODES, tasks=CLASSIFICATION_TASKS)
    task_preset: str | None = option(None, "face (multiclass project, one tag per person, `unknown` for people to "
                                           "reject): find the largest face, identify it, or answer `unknown`",
                                     choices=TASK_PRESETS)
    backbone: str = option(AUTO, "the ImageNet-pretrained backbone; auto: in quick mode, chosen by repeated "
                                 "cross-validation among the backbones (and ensembles of them) whose features fit "
                                 f"in --selection-budget, elsewhere {DEFAULT_BACKBONE}", choices=(AUTO, *BACKBONES))
    head: str = option(AUTO, "the classifier head on the features; auto: linear, and in quick mode with up to 400 "
                             "images also mlp on the best features, chosen by repeated cross-validation (advanced "
                             "mode: linear)", choices=(AUTO, *HEADS), tasks=CLASSIFICATION_TASKS)
    selection_budget: float = option(SELECTION_BUDGET, "backbone passes over the images that the candidates' "
                                                       "features may take, in EfficientNet-Lite0 images (Lite1 counts "
                                                       "1.45 an image, Lite2 2.0, a mirrored view as much again), "
                                                       "cheapest first; the cheapest is always computed",
                                     tasks=CLASSIFICATION_TASKS, modes=(QUICK,), metavar="IMAGES")
    epochs: int | None = option(None, "passes over the training images", modes=(ADVANCED,),
                                scoped={ADVANCED: 10, DETECTION: 60})
    fine_tune_stages: int = option(1, "how many of the backbone's last stages are fine-tuned",
                                   tasks=CLASSIFICATION_TASKS, modes=(ADVANCED,))
    batch_size: int | None = option(None, "images per training step", modes=(ADVANCED,),
                                    scoped={ADVANCED: 32, DETECTION: 4})
    learning_rate: float | None = option(None, "learning rate of the fine-tuned backbone blocks (AdamW, cosine "
                                               "decay); the head learns 10x (advanced) or 5x (detection) faster",
                                         modes=(ADVANCED,), scoped={ADVANCED: 1e-4, DETECTION: 2e-4})
    weight_decay: float | None = option(None, "the head's L2 penalty (default: the best of 1e-4, 1e-3, 1e-2 by "
                                              "out-of-fold loss; advanced mode: validation loss)",
                                        tasks=CLASSIFICATION_TASKS)
    target_precision: float = option(0.95, "the answers kept above the `uncertain` (face: `unknown`) threshold "
                                           "must be right this often on the out-of-fold predictions of every "
                                           "labeled image (advanced mode: the validation images)",
                                     tasks=(MULTICLASS, FACE))
    face_margin: float = option(0.2, "widen the detected face box by this share of its size on every side",
                                tasks=(FACE,))
    input_size: int | None = option(None, "the square input side in pixels, a multiple of 32", tasks=(DETECTION,),
                                    scoped={DETECTION: 448})
    test_fraction: float = option(0.2, "share of each class held out for testing when the project sets no split "
                                       "(quick mode: with --evaluation held-out)")
    validation_fraction: float = option(0.15, "share of the training side used to choose thresholds and stop early",
                                        modes=(ADVANCED,))
    seed: int = option(0, "seeds the split, the initialization and the augmentation")
    evaluation: str = option(AUTO, "what the metrics are measured on: the out-of-fold predictions of repeated k-fold "
                                   "cross-validation over every labeled image (cross-validation; the model then "
                                   "learns from all of them), or also a test split kept out (held-out: the "
                                   "project's test images, or --test-fraction of each class); auto: the project's "
                                   "test images when it has some, else cross-validation. Thresholds and the choice "
                                   "of candidates always come from the out-of-fold predictions, and the estimate "
                                   "from whichever set is larger", choices=EVALUATIONS, tasks=CLASSIFICATION_TASKS,
                             modes=(QUICK,))
    refit: bool = option(True, "keep the held-out images out of the final model (by default, once evaluated, "
                               "the model is fitted again on every labeled image with the settings chosen; "
                               "the metrics stay the held-out ones)", tasks=(*CLASSIFICATION_TASKS, DETECTION),
                         modes=(QUICK,), off_flag="--no-refit")
    int8: bool = option(True, "skip the INT8 variant (by default every version also gets a static INT8 variant "
                              "when it keeps fp32's accuracy: quick classifiers judged on the out-of-fold "
                              "predictions of every labeled image, detectors on validation images; the scoring "
                              "service serves it on CPUs where it is faster)", off_flag="--no-int8")
    fp16: bool = option(True, "skip the fp16 variant (by default every version also gets a float16 variant when it "
                              "agrees with fp32 on validation images; the scoring service serves it on GPUs where it "
                              "is faster)", off_flag="--no-fp16")

    run_id: str | None = option(None, "report on this training run (created queued by the launcher; default: a "
                                      "new run)", kind="runtime")
    threads: int | None = option(None, "CPU threads (default: the CPUs this process may use, within a pod's CPU "
                                       "limit)", kind="runtime")
    cache_dir: Path | None = option(None, "feature cache (default: VISIONDOCK_TRAINER_CACHE_DIR)",  # noqa: RUF009
                                    kind="runtime", metavar="DIR")
    progress: bool = option(True, "no progress bars (logs only)", kind="runtime", off_flag="--no-progress")

    def __post_init__(self) -> None:
        for f in fields(self):
            spec: OptionSpec = f.metadata[_SPEC]
            value = getattr(self, f.name)
            if spec.choices and value is not None and value not in spec.choices:
                raise OptionError(f"{flag(f.name)} {value!r} is not one of {', '.join(map(str, spec.choices))}")
        self._check_ranges()
        # Refuse now what no task could use with this mode and preset; the project's type decides the rest.
        possible = (FACE,) if self.task_preset == FACE else PROJECT_TYPES
        for name in self.chosen():
            spec = _spec(name)
            if not any(spec.applies(task, self.mode) for task in possible):
                preset = f" with the {self.task_preset} preset" if self.task_preset else " without a task preset"
                raise OptionError(f"{flag(name)} is for {spec.scope()}; it does nothing in {self.mode} mode{preset}")

    def _check_ranges(self) -> None:
        wrong = []
        for name in ("test_fraction", "validation_fraction"):
            if not 0 <= getattr(self, name) < 1:
                wrong.append(f"{flag(name)} must be at least 0 and below 1")
        for name in ("epochs", "fine_tune_stages", "batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                wrong.append(f"{flag(name)} must be at least 1")
        if self.learning_rate is not None and self.learning_rate <= 0:
            wrong.append("--learning-rate must be above 0")
        if self.weight_decay is not None and self.weight_decay < 0:
            wrong.append("--weight-decay must be at least 0")
        if not 0 < self.target_precision <= 1:
            wrong.append("--target-precision must be above 0 and at most 1")
        if self.face_margin < 0:
            wrong.append("--face-margin must be at least 0")
        if self.selection_budget < 0:
            wrong.append("--selection-budget must be at least 0")
        if wrong:
            raise OptionError("; ".join(wrong))
        if self.input_size is not None:
            check_input_size(self.input_size)

    # -- what the run uses ---------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.model or self.project

    @property
    def cpu_threads(self) -> int:
        return self.threads or available_cpus()

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or Settings().resolved_trainer_cache_dir

    def chosen(self, *names: str) -> dict[str, Any]:
        """The training options (or those of `names`) set to something other than their default."""
        found = {}
        for f in fields(self):
            if f.metadata[_SPEC].kind == "training" and (not names or f.name in names):
                value = getattr(self, f.name)
                if value != f.default:
                    found[f.name] = value
        return found

    def check_applies(self, task: str) -> None:
        """Refuse the options set that do nothing for `task` (a model task: multiclass ... face)."""
        for name in self.chosen():
            spec = _spec(name)
            if not spec.applies(task, self.mode):
                run = f"trains a {task} model" if task == DETECTION else f"trains a {task} model in {self.mode} mode"
                raise OptionError(f"{flag(name)} is for {spec.scope()}; this run {run}")

    def params(self) -> dict[str, Any]:
        """The training options, as a run and its version store them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata[_SPEC].kind == "training"}

    # -- command lines ---------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, project_positional: bool = False) -> None:
        """Every option as a flag (the project as a positional argument if asked). The parser stops
        expanding abbreviations: a prefix of a flag (`--cache` for `--cache-dir`) is refused, never
        taken for the option it might shorten."""
        parser.allow_abbrev = False
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            spec: OptionSpec = f.metadata[_SPEC]
            if f.name == "project":
                if project_positional:
                    parser.add_argument("project", help=spec.help)
                else:
                    parser.add_argument("--project", required=True, help=spec.help)
                continue
            # Absent flags stay absent (SUPPRESS): the dataclass's defaults are the only ones.
            common: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f.default, spec)}
            if hints[f.name] is bool:
                if spec.off_flag:
                    parser.add_argument(spec.off_flag, action="store_false", **common)
                else:
                    parser.add_argument(flag(f.name), action="store_true", **common)
                continue
            value_type = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
            parser.add_argument(flag(f.name), type=value_type, choices=spec.choices, metavar=spec.metavar, **common)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainingOptions:
        """The options parsed by a parser `add_arguments` set up; OptionError for a refused combination."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    def to_argv(self) -> list[str]:
        """The Job's command line for these options (`python -m services.trainer ...`): what is not a default."""
        argv = ["--project", self.project]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "project" or value == f.default:
                continue
            spec: OptionSpec = f.metadata[_SPEC]
            if isinstance(value, bool):
                argv.append(spec.off_flag if spec.off_flag else flag(f.name))
            else:
                argv += [flag(f.name), str(value)]
        return argv


def _help(default: Any, spec: OptionSpec) -> str:
    text = spec.help
    if spec.scoped:
        text += " (default: " + ", ".join(f"{value:g} in advanced mode" if scope == ADVANCED else
                                         f"{value:g} for {scope}" for scope, value in spec.scoped.items()) + ")"
    elif default is not None and not isinstance(default, bool) and "default:" not in text:
        text += f" (default: {default})"
    if spec.tasks != MODEL_TASKS or spec.modes != MODES:
        text += f"; for {spec.scope()}"
    return text
