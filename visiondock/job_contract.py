"""What a training Job's container is told, by whoever starts it.

The Helm chart installs the trainer as a suspended CronJob whose jobTemplate is the one description
of a training Job. A Job made from it learns which project to train in one of two ways:

- `VISIONDOCK_TRAINER_PROJECT`, set by the registry's launcher (and by `kubectl set env`);
- else the Job's own name, which the chart hands the container through the downward API in
  `VISIONDOCK_TRAINER_JOB_NAME`: `kubectl create job train-flowers --from=cronjob/<release>-trainer`
  trains project `flowers`. Project ids are lowercase letters, digits and '-', never '.', so a name
  may carry a '.' and anything after it to tell two Jobs of one project apart (`train-flowers.2`).

Trainer options travel as command-line arguments appended to the template's own, built from
`RUN_OPTIONS` only: the training options a run may set (the trainer's `TrainingOptions` fields of
kind "training", which a test holds this table to). Everything else a trainer takes (its project,
model, run, cache directory, the services' URLs and its key) comes from whoever starts it, never
from a run's parameters.

Where the registry starts Jobs (`KubernetesSettings`) and how a launch fails (`TrainingJobError`) live
here, beside the contract, not in services.registry.kubernetes_jobs: that module needs the optional
`kubernetes` package, which a registry that starts no Jobs (one machine) does not install.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from visiondock.vocabulary import AUTO, BACKBONES, EVALUATIONS, HEADS, MODES, TASK_PRESETS

PROJECT_ENV = "VISIONDOCK_TRAINER_PROJECT"
JOB_NAME_ENV = "VISIONDOCK_TRAINER_JOB_NAME"
JOB_NAME_PREFIX = "train-"
TRAINER_CONTAINER = "trainer"  # the container of the template that runs `python -m services.trainer`

# What whoever starts the trainer decides, never a run's parameters: named in the refusal.
RESERVED_OPTIONS = frozenset({"project", "model", "run_id", "threads", "cache_dir", "progress", "annotation_url",
                              "registry_url", "api_key", "api_keys", "help"})
# Settings a launched trainer must not inherit from the process that starts it: the keys a service
# accepts, the secret that signs run keys, the storage credentials. It gets its run's key instead.
WITHHELD_SETTINGS = ("VISIONDOCK_API_KEY", "VISIONDOCK_API_KEYS", "VISIONDOCK_API_KEY_ENTRIES",
                     "VISIONDOCK_API_KEYS_FILE", "VISIONDOCK_RUN_KEY_SECRET", "VISIONDOCK_RUN_KEY_SECRET_FILE",
                     "VISIONDOCK_AZURE_STORAGE_CONNECTION_STRING", "VISIONDOCK_COSMOS_KEY")
API_KEY_ENV = "VISIONDOCK_API_KEY"


@dataclass(frozen=True)
class RunOption:
    """A training option a run may set, as the trainer's command line takes it."""

    name: str
    type: type  # bool, int, float or str
    choices: tuple[str, ...] = ()
    off_flag: str | None = None  # a boolean that is on by default: the flag that turns it off

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def argv(self, value: Any) -> list[str]:
        """The flags for `value`; InvalidOptionsError when it is not a value of this option."""
        if value is None:
            return []
        if self.type is bool:
            if not isinstance(value, bool):
                raise InvalidOptionsError(f"training option {self.name!r} is true or false; got {value!r}")
            if self.off_flag is not None:
                return [] if value else [self.off_flag]
            return [self.flag] if value else []
        accepted = (int, float) if self.type is float else (self.type,)
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise InvalidOptionsError(f"training option {self.name!r} takes a {self.type.__name__}; got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidOptionsError(f"training option {self.name!r} must be a finite number; got {value!r}")
        if self.choices and value not in self.choices:
            raise InvalidOptionsError(f"training option {self.name!r} is one of {', '.join(self.choices)}; "
                                      f"got {value!r}")
        return [self.flag, str(value)]


_OPTIONS = [
    RunOption("mode", str, MODES),
    RunOption("task_preset", str, TASK_PRESETS),
    RunOption("backbone", str, (AUTO, *BACKBONES)),
    RunOption("head", str, (AUTO, *HEADS)),
    RunOption("selection_budget", float),
    RunOption("epochs", int),
    RunOption("fine_tune_stages", int),
    RunOption("batch_size", int),
    RunOption("learning_rate", float),
    RunOption("weight_decay", float),
    RunOption("target_precision", float),
    RunOption("face_margin", float),
    RunOption("input_size", int),
    RunOption("test_fraction", float),
    RunOption("validation_fraction", float),
    RunOption("seed", int),
    RunOption("evaluation", str, EVALUATIONS),
    RunOption("refit", bool, off_flag="--no-refit"),
    RunOption("int8", bool, off_flag="--no-int8"),
    RunOption("fp16", bool, off_flag="--no-fp16"),
]
RUN_OPTIONS: dict[str, RunOption] = {option.name: option for option in _OPTIONS}


def project_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The project a training Job's container should train, or None outside such a Job."""
    env = os.environ if environ is None else environ
    if env.get(PROJECT_ENV):
        return env[PROJECT_ENV]
    name = env.get(JOB_NAME_ENV, "")
    if name.startswith(JOB_NAME_PREFIX) and len(name) > len(JOB_NAME_PREFIX):
        return name[len(JOB_NAME_PREFIX):].split(".", 1)[0]
    return None


def job_name(project: str, run_id: str) -> str:
    """A Job name that names its project the way `project_from_environment` reads it back (when the
    project fits: a Job name has at most 63 characters; the launcher also sets PROJECT_ENV)."""
    suffix = "." + run_id.removeprefix("run-")
    return (JOB_NAME_PREFIX + project)[: 63 - len(suffix)].rstrip("-") + suffix


class InvalidOptionsError(ValueError):
    pass


def trainer_argv(options: Mapping[str, Any]) -> list[str]:
    """A run's training options as `python -m services.trainer` flags, from `RUN_OPTIONS` only:
    {"mode": "advanced", "int8": False, "epochs": 5} -> ["--mode", "advanced", "--no-int8", "--epochs", "5"].
    None (and a boolean at its default) leaves a flag out. A name that is not in the table (an identity
    or connection option, an abbreviation, anything else) and a value of the wrong kind raise
    InvalidOptionsError; the trainer's parser still judges combinations (an option its task does not use)."""
    argv: list[str] = []
    for name, value in options.items():
        option = RUN_OPTIONS.get(name)
        if option is None:
            if name in RESERVED_OPTIONS:
                raise InvalidOptionsError(f"{name!r} is decided by whoever starts the trainer, never by a run's "
                                          "params")
            raise InvalidOptionsError(f"{str(name)[:64]!r} is not a training option; a run may set "
                                      f"{', '.join(RUN_OPTIONS)}")
        argv += option.argv(value)
    return argv


def trainer_environment(environ: Mapping[str, str], api_key: str) -> dict[str, str]:
    """`environ` without the WITHHELD_SETTINGS, presenting `api_key` (a run's own key)."""
    kept = {name: value for name, value in environ.items() if name not in WITHHELD_SETTINGS}
    return {**kept, API_KEY_ENV: api_key}


class KubernetesSettings(BaseSettings):
    """Where training Jobs go (VISIONDOCK_KUBERNETES_*). The chart sets them for the registry."""

    model_config = SettingsConfigDict(env_prefix="VISIONDOCK_KUBERNETES_", extra="ignore")

    namespace: str = ""  # empty: the pod's own namespace, else the kubeconfig context's, else default
    trainer_cronjob: str = ""  # empty: this process starts no Jobs
    trainer_gpu_cronjob: str = ""  # empty: no GPU training


class TrainingJobError(RuntimeError):
    """The API server refused or could not be asked; `status` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
