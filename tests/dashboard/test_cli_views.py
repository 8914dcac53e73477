"""`visiondock models compare`, `visiondock runs [--follow]` and `visiondock dashboard` against the
registry as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.dashboard.conftest import MODEL, ROOT, Trained

pytestmark = [pytest.mark.e2e, pytest.mark.training]


def cli(trained: Trained, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **trained.services.environment()}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_compare_prints_per_class_deltas_marked(trained: Trained) -> None:
    first, second = (v["version"] for v in trained.versions)
    compared = trained.registry.compare_versions(MODEL, first, second)
    shown = cli(trained, "models", "compare", MODEL, str(first), str(second))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{MODEL}: v{first} -> v{second}"
    accuracy = compared["headline"]["accuracy"]
    assert f"{accuracy['a']:.3f}" in lines[1] and f"{accuracy['delta']:+.3f}" in lines[1]
    for label, row in compared["per_class"].items():
        line = next(line for line in lines if line.split()[0] == label)
        assert f"{row['f1']['delta']:+.3f}" in line
    summary = compared["summary"]
    assert lines[-1].startswith(f"v{second} is better on {summary['better']}, worse on {summary['worse']}")
    bad = cli(trained, "models", "compare", MODEL, "1")
    assert bad.returncode != 0 and "usage: visiondock models compare MODEL V1 V2" in bad.stderr
    assert cli(trained, "models", MODEL).stdout.count("multiclass") == 2


def test_runs_lists_progress_and_follows_a_run_log_to_its_end(trained: Trained) -> None:
    registry = trained.registry
    run = registry.create_run(MODEL)
    registry.update_run(run["id"], status="running", stage="train", epoch=2, epochs=5)
    listed = cli(trained, "runs", "--model", MODEL)
    line = next(line for line in listed.stdout.splitlines() if line.startswith(run["id"]))
    assert "running" in line and "epoch 2/5" in line

    def finish() -> None:
        time.sleep(2.5)
        registry.append_run_log(run["id"], ["epoch 3/5 loss=0.3", "epoch 4/5 loss=0.2"])
        time.sleep(1.0)
        registry.update_run(run["id"], status="failed", error="out of memory")

    registry.append_run_log(run["id"], ["stage train", "epoch 2/5 loss=0.4"])
    worker = threading.Thread(target=finish)
    worker.start()
    followed = cli(trained, "runs", run["id"], "--follow")
    worker.join()
    assert followed.returncode == 1
    assert followed.stdout.splitlines() == ["stage train", "epoch 2/5 loss=0.4", "epoch 3/5 loss=0.3",
                                            "epoch 4/5 loss=0.2", f"{run['id']} failed: out of memory"]


def test_dashboard_prints_a_url_that_serves_the_page(trained: Trained) -> None:
    printed = cli(trained, "dashboard")
    console, url = printed.stdout.splitlines()
    assert printed.returncode == 0 and url == trained.url
    assert console == f"{trained.services.url('annotation')}/app#/models"
    assert httpx.get(console.partition("#")[0]).status_code == 200
    page = httpx.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "API key" in page.text
    assert httpx.get(f"{url}/assets/dashboard.js").headers["content-type"].startswith("text/javascript")
    for missing in ("nothing.js", "..%2Fcatalog.py", "__init__.py"):
        assert httpx.get(f"{url}/assets/{missing}").status_code == 404
