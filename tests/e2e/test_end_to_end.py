"""The whole loop against the services as real uvicorn processes talking HTTP:
images in → labels → the trainer Job's command → a registered version → promote →
the scoring service answers on held-out images it never saw."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cli.importer import import_dataset
from cli.local_services import LocalServices
from cli.synthetic import SHAPES, write_folder
from tests.support.stack import SERVED_MODEL
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient, ServiceError
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TRAIN_PER_CLASS = 24
HELDOUT_PER_CLASS = 8


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def _wait_for_version(scoring: ScoringClient, version: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = scoring.readiness()
        model = state.get("model")
        if isinstance(model, dict) and model.get("version") == version:
            return state
        time.sleep(0.25)
    raise AssertionError(f"scoring did not load version {version}: {state}")


def test_services_answer_health_and_refuse_missing_keys(services: LocalServices) -> None:
    for name in ("annotation", "registry", "scoring"):
        base = services.url(name)
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        refused = httpx.get(f"{base}/metrics")
        assert refused.status_code == 401
        assert "API key" in refused.json()["detail"]
        metrics = httpx.get(f"{base}/metrics", headers={"X-API-Key": LOCAL_DEV_API_KEY})
        assert "visiondock_http_requests_total" in metrics.text
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == f"VisionDock {name}"


def test_bad_input_gets_clear_4xx_and_nothing_half_written(annotation: AnnotationClient,
                                                           registry: RegistryClient, scoring: ScoringClient,
                                                           services: LocalServices) -> None:
    annotation.create_project("e2e-bad-input", "multiclass", tags=["a"])
    good = _jpeg()

    with pytest.raises(ServiceError) as not_image:
        annotation.upload_images("e2e-bad-input", [("notes.txt", b"just some text")])
    assert not_image.value.status == 415
    assert "not an image" in str(not_image.value)

    with pytest.raises(ServiceError) as truncated:
        annotation.upload_images("e2e-bad-input", [("cut.jpg", good[: len(good) // 2])])
    assert truncated.value.status == 400
    assert "truncated" in str(truncated.value)

    with pytest.raises(ServiceError) as unknown:
        annotation.upload_images("no-such-project", [("a.jpg", good)])
    assert unknown.value.status == 404
    assert "no-such-project" in str(unknown.value)

    with pytest.raises(ServiceError) as missing_alias:
        registry.get_alias("no-such-model", "production")
    assert missing_alias.value.status == 404

    # No model behind the scoring service's alias yet: a 503 that names the alias; and ready, as no model
    # that exists waits to be loaded (a first install must not wait for a model nobody trained yet).
    with pytest.raises(ServiceError) as not_loaded:
        scoring.predict(good)
    assert not_loaded.value.status == 503
    assert "no model loaded" in str(not_loaded.value) and "no alias 'production'" in str(not_loaded.value)
    assert scoring.is_ready()

    # Nothing of the refused uploads was stored: no documents, no blobs.
    assert list(annotation.list_images("e2e-bad-input")) == []
    assert not list((services.home / "blobs" / "data" / "images").glob("e2e-bad-input/*"))

    # A good upload next to a bad one: the good one is kept, the bad one reported.
    answer = annotation.upload_images("e2e-bad-input", [("ok.jpg", good), ("bad.jpg", b"\xff\xd8garbage")],
                                      tags=["a"])
    assert [r["status"] for r in answer["results"]] == ["created", "rejected"]
    assert len(list(annotation.list_images("e2e-bad-input"))) == 1


def test_loop_trains_promotes_and_scores_held_out_images(annotation: AnnotationClient, registry: RegistryClient,
                                                         scoring: ScoringClient, services: LocalServices,
                                                         tmp_path: Path) -> None:
    write_folder(tmp_path / "train", TRAIN_PER_CLASS, seed=11)
    write_folder(tmp_path / "heldout", HELDOUT_PER_CLASS, seed=12)
    annotation.create_project(SERVED_MODEL, "multiclass")
    summary = import_dataset(annotation, SERVED_MODEL, tmp_path / "train", "folder", progress=False)
    assert summary["created"] == TRAIN_PER_CLASS * len(SHAPES)
    again = import_dataset(annotation, SERVED_MODEL, tmp_path / "train", "folder", progress=False)
    assert again["created"] == 0 and again["duplicates"] == TRAIN_PER_CLASS * len(SHAPES)
    assert again["unchanged"] == TRAIN_PER_CLASS * len(SHAPES)

    # The same command a Kubernetes Job runs.
    env = {**os.environ, **services.environment(), "VISIONDOCK_LOG_FORMAT": "json"}
    job = subprocess.run([sys.executable, "-m", "services.trainer", "--project", SERVED_MODEL, "--seed", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    outcome = json.loads(job.stdout.strip().splitlines()[-1])
    version = outcome["version"]

    stored = registry.get_version(SERVED_MODEL, version)
    assert stored["task"] == "multiclass"
    assert sorted(stored["labels"]) == sorted(SHAPES)
    assert stored["metrics"]["accuracy"] == outcome["accuracy"]
    # Cross-validated on every labeled image, which the stored split lists; the estimate says on how many.
    assert set(stored["splits"]["train"]) == {image["id"] for image in annotation.list_images(SERVED_MODEL)}
    assert stored["splits"]["validation"] == stored["splits"]["test"] == []
    assert stored["metrics"]["estimate"]["images"] == TRAIN_PER_CLASS * len(SHAPES)

    registry.set_alias(SERVED_MODEL, "production", version)
    ready = _wait_for_version(scoring, version)
    assert ready["status"] == "ready"

    correct = total = 0
    for path in sorted((tmp_path / "heldout").glob("*/*.jpg")):
        answer = scoring.predict(path.read_bytes(), filename=path.name)
        assert answer["model"] == SERVED_MODEL and answer["version"] == version
        probabilities = [p["probability"] for p in answer["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True)
        correct += answer["predictions"][0]["label"] == path.parent.name
        total += 1
    accuracy = correct / total
    chance = 1 / len(SHAPES)
    # Well above chance (1/6) on images the model never saw; the demo's larger set reaches ~85 %.
    assert accuracy >= 0.6, f"held-out accuracy {accuracy:.2f} (chance {chance:.2f})"

    # The raw-body form of the same request gives the same answer.
    sample = next((tmp_path / "heldout").glob("circle/*.jpg")).read_bytes()
    raw = httpx.post(f"{services.url('scoring')}/v1/predict", content=sample,
                     headers={"X-API-Key": LOCAL_DEV_API_KEY, "Content-Type": "image/jpeg"})
    assert raw.status_code == 200
    assert raw.json()["predictions"] == scoring.predict(sample)["predictions"]

    # The command line gives the same answer, one JSON line per image.
    env = {**os.environ, **services.environment()}
    line = subprocess.run([sys.executable, "-m", "cli.main", "predict", str(next(
        (tmp_path / "heldout").glob("circle/*.jpg")))], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60)
    assert line.returncode == 0, line.stderr
    assert json.loads(line.stdout)["predictions"] == scoring.predict(sample)["predictions"]

    # A corrupt image at scoring time is the caller's error, and the service stays up.
    broken = httpx.post(f"{services.url('scoring')}/v1/predict", content=sample[:300],
                        headers={"X-API-Key": LOCAL_DEV_API_KEY, "Content-Type": "image/jpeg"})
    assert broken.status_code == 400 and "truncated" in broken.json()["detail"]
    assert scoring.is_ready()


def test_trainer_exits_non_zero_with_a_reason_on_unusable_data(annotation: AnnotationClient,
                                                               services: LocalServices) -> None:
    annotation.create_project("e2e-empty", "multiclass", tags=["only"])
    env = {**os.environ, **services.environment(), "VISIONDOCK_LOG_FORMAT": "text"}
    job = subprocess.run([sys.executable, "-m", "services.trainer", "--project", "e2e-empty"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 2
    assert "no labeled images" in job.stderr
