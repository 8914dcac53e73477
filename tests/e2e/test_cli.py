"""The `visiondock` command line against the services as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cli.local_services import LocalServices, free_port
from cli.synthetic import write_folder
from visiondock.clients import RegistryClient

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def cli(services: LocalServices, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **services.environment()}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_project_import_models_promote_predict(services: LocalServices, registry: RegistryClient,
                                               tmp_path: Path) -> None:
    created = cli(services, "project", "create", "cli-shapes", "--type", "multiclass", "--tags", "circle")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["id"] == "cli-shapes"
    listed = cli(services, "project", "list")
    assert "cli-shapes" in listed.stdout

    write_folder(tmp_path / "data", 2, seed=3)
    imported = cli(services, "import", "cli-shapes", str(tmp_path / "data"), "--format", "folder")
    assert imported.returncode == 0, imported.stderr
    assert "imported 12 images" in imported.stdout
    not_a_dataset = cli(services, "import", "cli-shapes", str(tmp_path / "nothing-here"))
    assert not_a_dataset.returncode == 2 and "not a folder" in not_a_dataset.stderr

    duplicate = cli(services, "project", "create", "cli-shapes", "--type", "multiclass")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    missing = cli(services, "promote", "cli-shapes", "1", "--alias", "production")
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    trained = cli(services, "train", "cli-shapes", timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert "registered cli-shapes version 1" in trained.stdout
    # Two photos per shape: cross-validated, trained on all twelve, with a warning rather than an error.
    assert "2-fold cross-validated accuracy" in trained.stdout and "learned from all 12" in trained.stdout
    assert "warning: few images per class" in trained.stdout
    # The estimate on new photos beside its sample size, and how the candidate was chosen.
    estimate = registry.get_version("cli-shapes", 1)["metrics"]["estimate"]
    low, high = estimate["interval"]
    assert (f"expected accuracy on new photos {estimate['value']:.1%} (95 % interval {low:.1%}-{high:.1%}) from 12 "
            "images") in trained.stdout
    assert "5 x 2-fold cross-validation on 12 images (cheapest within one standard error of the best" in trained.stdout
    assert "<- chosen" in trained.stdout and "INT8 variant" in trained.stdout
    shown = cli(services, "models", "cli-shapes", "1")
    assert shown.returncode == 0 and "expected accuracy on new photos" in shown.stdout and "<- chosen" in shown.stdout
    versions = cli(services, "models", "cli-shapes")
    assert f"accuracy {estimate['value']:.1%} [{low:.1%}-{high:.1%}] n=12" in versions.stdout
    issues = cli(services, "label-issues", "cli-shapes", "1")
    assert issues.returncode == 0 and "likely label errors in cli-shapes version 1 (of 12 labeled images" in \
        issues.stdout
    promoted = cli(services, "promote", "cli-shapes", "1", "--alias", "production")
    assert promoted.returncode == 0 and "cli-shapes@production -> version 1 (new alias)" in promoted.stdout
    assert registry.get_alias("cli-shapes", "production")["version"] == 1
    # A second version (the same file) to promote and roll back from.
    first = registry.get_version("cli-shapes", 1)
    copy = registry.download_artifact("cli-shapes", 1, tmp_path / "v1.onnx")
    registry.register_version("cli-shapes", copy, {k: first[k] for k in ("task", "labels", "metrics")})
    promoted = cli(services, "promote", "cli-shapes", "2", "--reason", "same model, new number")
    assert "cli-shapes@production -> version 2 (was version 1)" in promoted.stdout, promoted.stderr
    rolled_back = cli(services, "rollback", "cli-shapes", "--alias", "production")
    assert "cli-shapes@production -> version 1 (was version 2)" in rolled_back.stdout, rolled_back.stderr
    moves = registry.alias_history("cli-shapes", "production")
    assert [(m["action"], m["to_version"]) for m in moves] == [("rollback", 1), ("move", 2), ("move", 1)]
    assert moves[1]["reason"] == "same model, new number"
    models = cli(services, "models")
    assert "cli-shapes" in models.stdout and "production=1" in models.stdout

    bad_image = tmp_path / "notes.txt"
    bad_image.write_text("not an image")
    predicted = cli(services, "predict", str(bad_image), str(tmp_path / "missing.jpg"))
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert predicted.returncode == 1
    assert [line["file"] for line in lines] == [str(bad_image), str(tmp_path / "missing.jpg")]
    assert all("error" in line for line in lines)


def test_up_serves_until_sigterm_and_stops_every_service(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("annotation", "registry", "scoring")}
    args = [sys.executable, "-m", "cli.main", "up", "--home", str(tmp_path / "home")]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        banner = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            banner.append(line)
            if "Press Ctrl-C" in line or not line:
                break
        text = "".join(banner)
        for port in ports.values():
            assert f"http://127.0.0.1:{port}" in text
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "stopped." in process.stdout.read()
        for port in ports.values():
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
