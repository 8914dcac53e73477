"""Controlling launched detection trainings across real processes: the registry starts the trainer
beside it, the run carries an estimate of the time left from its first epoch, a second Start on the
same project is refused, and Cancel stops the trainer: by itself between epochs, or, when it does
not within the grace period, by the registry ending its process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cli.local_services import LocalServices
from tests.support.stack import running_services
from tests.trainer.generated import box_scene, jpeg
from visiondock.clients import AnnotationClient
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.training]
AUTH = {"X-API-Key": LOCAL_DEV_API_KEY}
# Small images, a schedule far longer than the test: the run is always mid-training when cancelled.
LONG_RUN = {"epochs": 5000, "input_size": 64, "int8": False, "fp16": False}


@contextlib.contextmanager
def stack(tmp_path: Path, grace_seconds: float) -> Iterator[LocalServices]:
    with running_services(tmp_path / "home", env={"VISIONDOCK_TRAINING_LAUNCHER": "local",
                                                  "VISIONDOCK_TRAINING_CANCEL_GRACE_SECONDS": str(grace_seconds),
                                                  "VISIONDOCK_TRAINER_CACHE_DIR": str(tmp_path / "cache")}) as local:
        yield local


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """A registry that gives a cancelled trainer 60 s to stop by itself."""
    with stack(tmp_path_factory.mktemp("patient"), 60) as local:
        yield local


def shelf_project(services: LocalServices, name: str) -> None:
    """A detection project of 16 generated scenes with their boxes."""
    rng = np.random.default_rng(5)
    scenes = [box_scene(rng) for _ in range(16)]
    with AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as annotation:
        annotation.create_project(name, "detection", tags=["disc", "block"])
        files = [(f"scene-{i}.jpg", jpeg(image)) for i, (image, _) in enumerate(scenes)]
        answer = annotation.upload_images(name, files)
        for result, (_, regions) in zip(answer["results"], scenes, strict=True):
            annotation.set_image_regions(name, result["image"]["id"], regions)


def wait_for(registry: httpx.Client, run_id: str, done: Callable[[dict[str, Any]], bool],
             timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = registry.get(f"/v1/runs/{run_id}").json()
        if done(run):
            return run
        assert run["status"] in ("queued", "running") and time.monotonic() < deadline, run
        time.sleep(0.3)


def wait_for_log(path: Path, text: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.3)


def test_a_launched_run_estimates_its_time_holds_the_project_and_stops_between_epochs_when_cancelled(
        patient: LocalServices) -> None:
    shelf_project(patient, "shelves")
    launch = {"model": "shelves", "launch": {"on": "local"}, "params": LONG_RUN}
    with httpx.Client(base_url=patient.url("registry"), headers=AUTH, timeout=30) as registry:
        created = registry.post("/v1/runs", json=launch)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        # Every epoch's report carries the time left, from the first report of an epoch on.
        run = wait_for(registry, run_id, lambda r: r.get("epoch") is not None)
        assert run["stage"] == "train" and run["remaining_seconds"] > 0 and run["expected_finish_at"]
        assert run["epochs"] == 5000

        # A second Start on the same project is refused, naming the run that holds it.
        again = registry.post("/v1/runs", json=launch)
        assert again.status_code == 409 and again.json()["code"] == "run_active"
        assert run_id in again.json()["detail"]

        # The CLI shows the progress with the estimate.
        env = {**os.environ, "VISIONDOCK_REGISTRY_URL": patient.url("registry"),
               "VISIONDOCK_API_KEY": LOCAL_DEV_API_KEY}
        listed = subprocess.run([sys.executable, "-m", "cli.main", "runs", "--model", "shelves"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert run_id in listed.stdout and "epoch " in listed.stdout and " left" in listed.stdout

        cancelled = registry.post(f"/v1/runs/{run_id}/cancel", json={"reason": "wrong boxes"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        # The trainer notices at its next epoch's report and stops by itself, well within the grace period.
        log = wait_for_log(patient.log_dir / "runs" / f"{run_id}.log", "stopped, nothing was registered")
        assert "SIGTERM" not in log
        run = registry.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "cancelled" and run["error"] == "cancelled: wrong boxes"
        assert run["version"] is None and run["remaining_seconds"] is None
        assert registry.get("/v1/models/shelves/versions").status_code == 404
        # The project is free again.
        restarted = registry.post("/v1/runs", json=launch)
        assert restarted.status_code == 201, restarted.text
        registry.post(f"/v1/runs/{restarted.json()['id']}/cancel")
        wait_for_log(patient.log_dir / "runs" / f"{restarted.json()['id']}.log", "stopped, nothing was registered")


def test_a_trainer_that_does_not_stop_within_the_grace_period_is_ended_and_the_run_stays_cancelled(
        tmp_path: Path) -> None:
    with stack(tmp_path, 0) as local:  # no grace: the registry ends the trainer at once
        shelf_project(local, "hasty")
        with httpx.Client(base_url=local.url("registry"), headers=AUTH, timeout=30) as registry:
            run_id = registry.post("/v1/runs", json={"model": "hasty", "launch": {"on": "local"},
                                                     "params": LONG_RUN}).json()["id"]
            wait_for(registry, run_id, lambda r: r.get("epoch") is not None)
            registry.post(f"/v1/runs/{run_id}/cancel")
            log = wait_for_log(local.log_dir / "runs" / f"{run_id}.log", "stopped by SIGTERM")
            assert "nothing was registered" in log
            # The launcher saw the process end with 143; the run says what the person did, not `failed`.
            time.sleep(1)
            run = registry.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "cancelled" and run["error"] == "cancelled"
            registry_log = (local.log_dir / "registry.log").read_text(errors="replace")
            assert "did not stop within 0 s" in registry_log
