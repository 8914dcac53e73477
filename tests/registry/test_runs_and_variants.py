"""Training runs (queued → running → succeeded | failed) and the INT8 and fp16 variants of a version."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.registry.app import create_app
from visiondock.settings import LOCAL_DEV_API_KEY, Settings

ROOT = Path(__file__).resolve().parents[2]
METADATA = {"task": "multiclass", "labels": ["cat", "dog"], "metrics": {"accuracy": 0.9}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING")
    with TestClient(create_app(settings), headers={"X-API-Key": LOCAL_DEV_API_KEY}) as test_client:
        yield test_client


def register(client: TestClient, model: str, payload: bytes, metadata: dict, **variants: bytes):
    files = {"model": ("model.onnx", payload)} | {name: (f"model.{name}.onnx", data) for name, data in variants.items()}
    return client.post(f"/v1/models/{model}/versions", files=files, data={"metadata": json.dumps(metadata)})


def test_a_run_reports_progress_and_registers_under_its_reserved_number(client: TestClient) -> None:
    run = client.post("/v1/runs", json={"model": "pets", "project_id": "pets", "params": {"mode": "quick"}})
    assert run.status_code == 201
    run = run.json()
    assert run["status"] == "queued" and run["version"] is None and run["id"].startswith("run-")
    run_id = run["id"]

    # Progress from a queued run makes it running.
    progress = client.patch(f"/v1/runs/{run_id}", json={"stage": "train", "epoch": 2, "epochs": 5,
                                                       "metrics": {"val_loss": 0.4}}).json()
    assert progress["status"] == "running" and progress["started_at"] and progress["epoch"] == 2
    assert progress["metrics"] == {"val_loss": 0.4}

    # Another registration in between takes the next number; the run keeps the one it reserved.
    reserved = client.post(f"/v1/runs/{run_id}/reserve-version").json()["version"]
    assert client.post(f"/v1/runs/{run_id}/reserve-version").json()["version"] == reserved
    assert register(client, "pets", b"someone else's model", METADATA).json()["version"] == reserved + 1
    version = register(client, "pets", b"the run's model", {**METADATA, "run_id": run_id})
    assert version.status_code == 201, version.text
    assert version.json()["version"] == reserved and version.json()["run_id"] == run_id

    done = client.get(f"/v1/runs/{run_id}").json()
    assert done["status"] == "succeeded" and done["version"] == reserved and done["finished_at"]
    # A finished run accepts nothing more: no second version, no status change.
    again = register(client, "pets", b"twice", {**METADATA, "run_id": run_id})
    assert again.status_code == 409 and "succeeded" in again.json()["detail"]
    late = client.patch(f"/v1/runs/{run_id}", json={"status": "failed", "error": "too late"})
    assert late.status_code == 409
    assert client.get("/v1/models/pets").json()["latest_version"] == reserved + 1


def test_a_failed_run_keeps_its_error_and_registers_nothing(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json={"model": "pets"}).json()["id"]
    client.post(f"/v1/runs/{run_id}/reserve-version")
    no_reason = client.patch(f"/v1/runs/{run_id}", json={"status": "failed"})
    assert no_reason.status_code == 422 and "error" in no_reason.json()["detail"]
    failed = client.patch(f"/v1/runs/{run_id}", json={"status": "failed", "error": "class 'dog' has 1 image",
                                                     "report": {"skipped": []}}).json()
    assert failed["status"] == "failed" and failed["error"] == "class 'dog' has 1 image" and failed["finished_at"]
    refused = register(client, "pets", b"model", {**METADATA, "run_id": run_id})
    assert refused.status_code == 409 and "failed" in refused.json()["detail"]
    assert client.post(f"/v1/runs/{run_id}/reserve-version").status_code == 200  # reads the old reservation
    assert client.get("/v1/models/pets/versions").json()["data"] == []
    # The reserved number stays unused: the next version skips it rather than reusing it.
    assert register(client, "pets", b"next", METADATA).json()["version"] == 2


def test_runs_are_listed_by_model_and_status_and_bad_ids_are_refused(client: TestClient) -> None:
    first = client.post("/v1/runs", json={"model": "pets"}).json()["id"]
    second = client.post("/v1/runs", json={"model": "pets"}).json()["id"]
    client.post("/v1/runs", json={"model": "cars"})
    client.patch(f"/v1/runs/{second}", json={"status": "running"})
    listed = client.get("/v1/runs", params={"model": "pets"}).json()["data"]
    assert [r["id"] for r in listed] == [second, first]  # newest first
    running = client.get("/v1/runs", params={"model": "pets", "status": "running"}).json()["data"]
    assert [r["id"] for r in running] == [second]
    assert client.get("/v1/runs/run-0000000000000000").status_code == 404
    assert client.get("/v1/runs/not-a-run").status_code == 422
    wrong_model = register(client, "cars", b"model", {**METADATA, "run_id": first})
    assert wrong_model.status_code == 409 and "trains model 'pets'" in wrong_model.json()["detail"]
    assert client.post("/v1/runs", json={"model": "Bad Name"}).status_code == 422


def test_a_version_carries_its_variants_with_checksum_and_metrics(client: TestClient) -> None:
    agreement = {"top1_agreement": 0.996, "checked": 250}
    metrics = {"int8": agreement, "fp16": {**agreement, "top1_agreement": 1.0}}
    version = register(client, "pets", b"fp32 bytes", {**METADATA, "variant_metrics": metrics},
                       int8=b"int8 bytes", fp16=b"fp16 bytes!")
    assert version.status_code == 201, version.text
    variants = version.json()["variants"]
    assert set(variants) == {"int8", "fp16"} and "variant_metrics" not in version.json()
    for name, data in (("int8", b"int8 bytes"), ("fp16", b"fp16 bytes!")):
        variant = variants[name]
        assert variant["sha256"] == hashlib.sha256(data).hexdigest() and variant["size"] == len(data)
        assert variant["top1_agreement"] == metrics[name]["top1_agreement"]
        assert variant["key"].endswith(f"/model.{name}.onnx")
        download = client.get(f"/v1/models/pets/versions/1/artifacts/model.{name}.onnx")
        assert download.content == data and download.headers["x-content-sha256"] == variant["sha256"]
    assert client.get("/v1/models/pets/versions/1/artifacts/model.onnx").content == b"fp32 bytes"

    plain = register(client, "pets", b"only fp32", METADATA).json()
    assert plain["variants"] == {}
    missing = client.get("/v1/models/pets/versions/2/artifacts/model.int8.onnx")
    assert missing.status_code == 404 and "no file 'model.int8.onnx'" in missing.json()["detail"]
    assert client.get("/v1/models/pets/versions/1/artifacts/weights.bin").status_code == 422
    orphan = register(client, "pets", b"x", {**METADATA, "variant_metrics": {"int8": agreement}})
    assert orphan.status_code == 422 and "not sent" in orphan.json()["detail"]
    empty = register(client, "pets", b"x", METADATA, int8=b"")
    assert empty.status_code == 400 and "int8" in empty.json()["detail"]
    assert client.get("/v1/models/pets").json()["latest_version"] == 2


@pytest.mark.processes
def test_the_registry_starts_and_records_runs_without_the_kubernetes_package(tmp_path: Path) -> None:
    """`kubernetes` is an optional extra: only a registry that starts training Jobs needs it."""
    script = f"""
import sys
sys.modules["kubernetes"] = None  # any `import kubernetes` now raises ImportError
from fastapi.testclient import TestClient
from services.registry.app import create_app
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
settings = Settings(home={str(tmp_path)!r}, log_format="text", log_level="WARNING")
with TestClient(create_app(settings), headers={{"X-API-Key": LOCAL_DEV_API_KEY}}) as client:
    assert client.get("/readyz").status_code == 200
    created = client.post("/v1/runs", json={{"model": "flowers", "params": {{"mode": "quick"}}}})
    assert created.status_code == 201, created.text
    assert client.get(f"/v1/runs/{{created.json()['id']}}").json()["status"] == "queued"
assert not any(name.startswith("kubernetes.") for name in sys.modules)
print("started without kubernetes")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "started without kubernetes" in done.stdout
