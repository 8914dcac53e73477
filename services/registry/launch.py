"""Starting the training of a run created with `launch: true`.

A launcher turns a queued run into a running trainer; the trainer reports on the run
(stage, epoch, metrics) and registers the version. `LocalProcessLauncher` is the one
for a single machine: it spawns `python -m services.trainer --project P --run-id R`
with this deployment's service URLs and key, logs to `<home>/logs/runs/<run>.log`,
and marks the run failed if the process dies without saying so itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from visiondock.settings import Settings

from .runs import FINISHED, TrainingRuns

log = logging.getLogger(__name__)

# Run params a launch passes to the trainer as `--<name> <value>` (flags for booleans).
LAUNCH_PARAMS = ("mode", "backbone", "head", "epochs", "seed")
LAUNCH_FLAGS = ("int8",)


class TrainingLauncher(Protocol):
    name: str

    def launch(self, run: dict[str, Any]) -> dict[str, Any]:
        """Start the run's training; what was started (for the log)."""

    def close(self) -> None: ...


def trainer_arguments(run: dict[str, Any]) -> list[str]:
    args = ["--project", run["project_id"] or run["model"], "--model", run["model"], "--run-id", run["id"],
            "--no-progress"]
    params = run.get("params") or {}
    for name in LAUNCH_PARAMS:
        if params.get(name) is not None:
            args += [f"--{name.replace('_', '-')}", str(params[name])]
    args += [f"--{name}" for name in LAUNCH_FLAGS if params.get(name) is True]
    return args


class LocalProcessLauncher:
    name = "local"

    def __init__(self, settings: Settings, runs: TrainingRuns, *, python: str = sys.executable) -> None:
        self.settings = settings
        self.runs = runs
        self.python = python
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def log_path(self, run_id: str) -> Path:
        return self.settings.home / "logs" / "runs" / f"{run_id}.log"

    def launch(self, run: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        env = {**os.environ, "VISIONDOCK_HOME": str(settings.home),
               "VISIONDOCK_ANNOTATION_URL": settings.annotation_url, "VISIONDOCK_REGISTRY_URL": settings.registry_url,
               "VISIONDOCK_API_KEY": settings.api_key.get_secret_value()}
        path = self.log_path(run["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as log_file:
            process = subprocess.Popen([self.python, "-m", "services.trainer", *trainer_arguments(run)], env=env,
                                       stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self._processes[run["id"]] = process
        threading.Thread(target=self._watch, args=(run["id"], process), daemon=True,
                         name=f"watch-{run['id']}").start()
        log.info("launched the training of run %s as process %s", run["id"], process.pid)
        return {"launcher": self.name, "pid": process.pid, "log": str(path)}

    def _watch(self, run_id: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            self._processes.pop(run_id, None)
        if code == 0:
            return
        try:
            if self.runs.get(run_id)["status"] not in FINISHED:
                self.runs.update(run_id, {"status": "failed",
                                          "error": f"the trainer exited with code {code}: {self._tail(run_id)}"})
        except Exception:  # the store may be closing with the service; the log keeps the story
            log.warning("could not mark run %s failed after its trainer exited with %s", run_id, code)

    def _tail(self, run_id: str, chars: int = 600) -> str:
        try:
            return self.log_path(run_id).read_text(errors="replace")[-chars:].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Stop the trainings this service started: on one machine they end with it."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def open_launcher(settings: Settings, runs: TrainingRuns) -> TrainingLauncher | None:
    if settings.resolved_training_launcher == "local":
        return LocalProcessLauncher(settings, runs)
    return None
