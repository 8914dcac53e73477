"""The trainer as a process beside the registry, for a run created with `launch: {"on": "local"}`.

On one machine (`visiondock up`, the labeling app's "Start training") there is no Kubernetes to
run a Job: `LocalTrainerLauncher` spawns `python -m services.trainer --project P --run-id R
<options>` with this deployment's service URLs and the run's own key (never this service's key, the
keys it accepts, the run key secret or storage credentials: `trainer_environment`), logs to
`<home>/logs/runs/<run>.log`,
and marks the run failed if the process dies without saying so itself. The trainer reports on
the run as it does in a Job. VISIONDOCK_TRAINING_LAUNCHER=none turns it off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visiondock.job_contract import trainer_environment
from visiondock.settings import Settings

from .runs import FINISHED, TrainingRuns

log = logging.getLogger(__name__)


class LocalTrainerLauncher:
    def __init__(self, settings: Settings, runs: TrainingRuns, *, python: str = sys.executable) -> None:
        self.settings = settings
        self.runs = runs
        self.python = python
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def log_path(self, run_id: str) -> Path:
        return self.settings.home / "logs" / "runs" / f"{run_id}.log"

    def launch(self, project: str, *, run_id: str, api_key: str, args: Sequence[str] = ()) -> dict[str, Any]:
        """Start the trainer of `run_id`, presenting `api_key` (the run's key); its process id and log file."""
        settings = self.settings
        env = trainer_environment({**os.environ, "VISIONDOCK_HOME": str(settings.home),
                                   "VISIONDOCK_ANNOTATION_URL": settings.annotation_url,
                                   "VISIONDOCK_REGISTRY_URL": settings.registry_url}, api_key)
        path = self.log_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "services.trainer", "--project", project, "--run-id", run_id, "--no-progress",
                   *args]
        with path.open("ab") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        with self._lock:
            self._processes[run_id] = process
        threading.Thread(target=self._watch, args=(run_id, process), daemon=True, name=f"watch-{run_id}").start()
        log.info("launched the training of run %s as process %s", run_id, process.pid)
        return {"pid": process.pid, "log": str(path)}

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


def open_local_trainer_launcher(settings: Settings, runs: TrainingRuns) -> LocalTrainerLauncher | None:
    if settings.resolved_training_launcher == "local":
        return LocalTrainerLauncher(settings, runs)
    return None
