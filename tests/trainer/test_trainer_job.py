"""`python -m services.trainer` as the Kubernetes Job runs it: a process against the services,
with exit codes and the training-run resource telling what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.local_services import LocalServices
from tests.trainer.conftest import project_name, upload_tagged
from tests.trainer.generated import shape_images
from visiondock.clients import AnnotationClient, RegistryClient, ServiceError

pytestmark = pytest.mark.training
ROOT = Path(__file__).resolve().parents[2]
SHAPES = ("circle", "square", "triangle")


def trainer(services: LocalServices, cache_dir: Path, *args: str,
            env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**services.environment(), "VISIONDOCK_LOG_FORMAT": "text", "VISIONDOCK_LOG_LEVEL": "INFO", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "services.trainer", "--no-progress", "--cache-dir", str(cache_dir),
                             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def only_run(registry: RegistryClient, model: str) -> dict:
    runs = registry.list_runs(model=model)
    assert len(runs) == 1, runs
    return runs[0]


def assert_nothing_registered(registry: RegistryClient, model: str) -> None:
    with pytest.raises(ServiceError) as missing:
        registry.list_versions(model)
    assert missing.value.status == 404


def test_the_job_registers_a_version_and_exits_0(services: LocalServices, annotation: AnnotationClient,
                                                 registry: RegistryClient, cache_dir: Path) -> None:
    project = project_name("job")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    upload_tagged(annotation, project, shape_images(SHAPES, 6, seed=21))
    created = registry.create_run(project, project_id=project, params={"launched_by": "test"})
    assert created["status"] == "queued"
    # Features of an image no longer trained on, last used a month ago; the cache is capped at 1 KB.
    stale = cache_dir / "features" / "0123456789abcdef" / "ab" / f"{'ab' * 32}.npy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 5000)
    month_ago = time.time() - 30 * 86400
    os.utime(stale, (month_ago, month_ago))
    process = trainer(services, cache_dir, "--project", project, "--run-id", created["id"], "--backbone",
                      "efficientnet-lite0", "--selection-budget", "0",
                      env={"VISIONDOCK_TRAINER_CACHE_MAX_GB": "0.000001"})
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    # The run pruned the cache: the stale file went, this run's feature files stayed (used this hour): the
    # 18 images' fp32 features and their INT8 backbone's (what the INT8 variant is judged on).
    assert not stale.exists() and not stale.parent.exists()
    assert sorted(len(list(d.rglob("*.npy"))) for d in (cache_dir / "features").iterdir()) == [18, 18]
    assert "removed 1 least recently used" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["run_id"] == created["id"] and summary["version"] == 1 and summary["task"] == "multiclass"
    assert summary["features"] == {"computed": 18, "cached": 0}
    run = registry.get_run(created["id"])
    assert run["status"] == "succeeded" and run["version"] == 1 and run["params"] == {"launched_by": "test"}
    assert run["report"]["features"]["computed"] == 18


def test_bad_data_exits_2_and_fails_the_run(services: LocalServices, annotation: AnnotationClient,
                                            registry: RegistryClient, cache_dir: Path) -> None:
    project = project_name("bad-job")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    upload_tagged(annotation, project, shape_images(SHAPES[:2], 3, seed=22) + shape_images(SHAPES[2:], 1, seed=23))
    process = trainer(services, cache_dir, "--project", project)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert "every class needs at least two labeled images" in err and "'triangle' has 1" in err
    run = only_run(registry, project)
    assert run["status"] == "failed" and "'triangle' has 1" in run["error"] and run["finished_at"]
    assert_nothing_registered(registry, project)


def test_sigterm_fails_the_run_and_registers_nothing(services: LocalServices, annotation: AnnotationClient,
                                                     registry: RegistryClient, cache_dir: Path) -> None:
    project = project_name("stopped")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    upload_tagged(annotation, project, shape_images(SHAPES, 6, seed=24))
    process = trainer(services, cache_dir, "--project", project, "--mode", "advanced", "--epochs", "200")
    try:
        deadline = time.monotonic() + 240
        run: dict = {}
        while time.monotonic() < deadline and process.poll() is None:
            runs = registry.list_runs(model=project)
            run = runs[0] if runs else {}
            if run.get("epoch"):  # fine-tuning has begun: the worst moment to vanish
                break
            time.sleep(0.3)
        assert run.get("status") == "running" and run.get("stage") == "train", (run, process.poll())
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    run = only_run(registry, project)
    assert run["status"] == "failed" and "SIGTERM" in run["error"] and run["version"] is None
    assert_nothing_registered(registry, project)
