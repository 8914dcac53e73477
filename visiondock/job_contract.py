"""What a training Job's container is told, by whoever starts it.

The Helm chart installs the trainer as a suspended CronJob whose jobTemplate is the one description
of a training Job. A Job made from it learns which project to train in one of two ways:

- `VISIONDOCK_TRAINER_PROJECT`, set by the registry's launcher (and by `kubectl set env`);
- else the Job's own name, which the chart hands the container through the downward API in
  `VISIONDOCK_TRAINER_JOB_NAME`: `kubectl create job train-flowers --from=cronjob/<release>-trainer`
  trains project `flowers`. Project ids are lowercase letters, digits and '-', never '.', so a name
  may carry a '.' and anything after it to tell two Jobs of one project apart (`train-flowers.2`).

Trainer options travel as command-line arguments appended to the template's own.

Where the registry starts Jobs (`KubernetesSettings`) and how a launch fails (`TrainingJobError`) live
here, beside the contract, not in visiondock.kubernetes_launcher: that module needs the optional
`kubernetes` package, which a registry that starts no Jobs (one machine) does not install.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ENV = "VISIONDOCK_TRAINER_PROJECT"
JOB_NAME_ENV = "VISIONDOCK_TRAINER_JOB_NAME"
JOB_NAME_PREFIX = "train-"
TRAINER_CONTAINER = "trainer"  # the container of the template that runs `python -m services.trainer`

_OPTION = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
# Options the Job's environment decides, never a run's parameters.
_RESERVED = frozenset({"project", "model", "run_id", "cache_dir", "annotation_url", "registry_url", "help"})


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
    """Trainer options as `python -m services.trainer` flags: {"mode": "advanced", "int8": True,
    "epochs": 5} -> ["--mode", "advanced", "--int8", "--epochs", "5"]. False and None leave a flag out.
    The trainer's own parser judges names and values; this refuses what must not come from a caller."""
    argv: list[str] = []
    for name, value in options.items():
        if not _OPTION.match(name) or name in _RESERVED:
            raise InvalidOptionsError(f"{name!r} is not a training option a run may set")
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, str | int | float):
            argv += [flag, str(value)]
        else:
            raise InvalidOptionsError(f"training option {name!r} must be a string, number or boolean")
    return argv


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
