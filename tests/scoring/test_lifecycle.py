"""Model lifecycle and prediction capture against the services as real uvicorn processes:
a hot swap under concurrent load with zero failed requests, ETag polling, a second
alias side by side, the INT8 variant, captures landing in the review queue, and a
registry outage (keep serving, say so; a restart serves the checksum-verified cache)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from cli.local_services import LocalServices, free_port
from services.scoring import settings as scoring_settings
from services.scoring.app import create_app
from services.scoring.settings import ScoringSettings
from tests.support.stack import running_services
from visiondock.captures import CAPTURES
from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.preprocess import PreprocessSpec, to_tensor
from visiondock.serve import WorkerPool, listening_socket, serve
from visiondock.settings import LOCAL_DEV_API_KEY, available_cpus
from visiondock.storage import Query
from visiondock.storage.documents_sqlite import SqliteDocumentStore

from . import tiny_models
from .conftest import AUTH, AppFactory
from .tiny_models import solid

ROOT = Path(__file__).resolve().parents[2]
MODEL = "colours"
RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def readiness(url: str) -> dict[str, Any]:
    try:
        return httpx.get(f"{url}/readyz", headers=AUTH, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


def serving_version(url: str, version: int, slot: str | None = None) -> bool:
    state = readiness(url)
    if slot is not None:
        state = state.get("slots", {}).get(slot, {})
    model = state.get("model")
    return isinstance(model, dict) and model.get("version") == version


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """A set of this module's own: its scoring service follows two aliases and prefers INT8, and the
    last test stops its registry."""
    env = {"VISIONDOCK_SCORING_POLL_SECONDS": "0.2", "VISIONDOCK_SCORING_SECONDARY_ALIAS": "staging",
           "VISIONDOCK_SCORING_VARIANT": "int8", "VISIONDOCK_LOG_FORMAT": "json"}
    with running_services(tmp_path_factory.mktemp("scoring-lifecycle"), scoring_model=MODEL, env=env) as services:
        yield services


@pytest.fixture(scope="module")
def registry(stack: LocalServices) -> Iterator[RegistryClient]:
    with RegistryClient(stack.url("registry"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def versions(registry: RegistryClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Version 1 (fp32 only) and version 2 (with INT8 and fp16 variant files) of the colour model."""
    from services.trainer.half_precision import convert_fp16

    root = tmp_path_factory.mktemp("lifecycle-models")
    metadata = {"task": "multiclass", "labels": tiny_models.COLOURS, "project_id": MODEL}
    first = registry.register_version(MODEL, tiny_models.classifier(root / "v1.onnx", gain=8.0), metadata)
    # Its fp32 file is the slower one (as INT8 is on most CPUs), so `auto` serves INT8 after timing both.
    second = registry.register_version(
        MODEL, tiny_models.classifier(root / "v2.onnx", gain=12.0, busywork=2), metadata,
        variants={"int8": tiny_models.classifier(root / "v2.int8.onnx", gain=11.0),
                  "fp16": convert_fp16(root / "v2.onnx", root / "v2.fp16.onnx")})
    return {"v1": int(first["version"]), "v2": int(second["version"])}


@pytest.mark.e2e
def test_swap_under_concurrent_load_fails_no_request(stack: LocalServices, registry: RegistryClient,
                                                     versions: dict[str, int]) -> None:
    url = stack.url("scoring")
    registry.set_alias(MODEL, "production", versions["v1"])
    wait_for(lambda: serving_version(url, versions["v1"]), "version 1")
    state = readiness(url)
    assert state["model"]["variant"] == "fp32" and "no 'int8' variant" in state["variant_note"]

    answers: list[tuple[int, int | None, str | None]] = []
    errors: list[str] = []
    stop = threading.Event()
    image = solid(RED)

    def client_loop() -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/predict", content=image, headers={"Content-Type": "image/jpeg"})
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                body = response.json()
                answers.append((response.status_code, body.get("version"), body.get("variant")))

    threads = [threading.Thread(target=client_loop) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(answers) > 100, "answers from version 1")
        registry.set_alias(MODEL, "production", versions["v2"])
        wait_for(lambda: any(version == versions["v2"] for _, version, _ in answers[-5:]), "the swap")
        count = len(answers)
        wait_for(lambda: len(answers) > count + 150, "answers after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert {status for status, _, _ in answers} == {200}
    seen = [version for _, version, _ in answers]
    assert seen[0] == versions["v1"] and versions["v2"] in seen
    assert all(answer == (200, versions["v2"], "int8") for answer in answers[-30:])
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert 'visiondock_scoring_model_swaps_total{slot="production"} 2.0' in metrics
    assert f'version="{versions["v2"]}"' in metrics.split("visiondock_scoring_model_info{")[1].split("\n")[0]


@pytest.mark.e2e
def test_alias_reads_are_conditional_on_the_etag(stack: LocalServices, registry: RegistryClient,
                                                 versions: dict[str, int]) -> None:
    alias_url = f"{stack.url('registry')}/v1/models/{MODEL}/aliases/production"
    first = httpx.get(alias_url, headers=AUTH)
    etag = first.headers["ETag"]
    assert etag.strip('"') == first.json()["etag"].strip('"')
    unchanged = httpx.get(alias_url, headers={**AUTH, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    registry.set_alias(MODEL, "production", versions["v2"])  # same version, but the alias document was written
    moved = httpx.get(alias_url, headers={**AUTH, "If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag


@pytest.mark.e2e
def test_second_alias_is_served_side_by_side(stack: LocalServices, registry: RegistryClient,
                                             versions: dict[str, int]) -> None:
    url = stack.url("scoring")
    registry.set_alias(MODEL, "staging", versions["v1"])
    wait_for(lambda: serving_version(url, versions["v1"], slot="staging"), "staging on version 1")
    staged = httpx.post(f"{url}/v1/aliases/staging/predict", content=solid(BLUE), headers=AUTH).json()
    production = httpx.post(f"{url}/v1/predict", content=solid(BLUE), headers=AUTH).json()
    assert (staged["version"], staged["alias"], staged["label"]) == (versions["v1"], "staging", "blue")
    assert (production["version"], production["alias"]) == (versions["v2"], "production")
    v2_metadata = httpx.get(f"{url}/v2/models/{MODEL}/versions/{versions['v1']}", headers=AUTH).json()
    assert v2_metadata["parameters"]["alias"] == "staging"


@pytest.mark.e2e
def test_a_pinned_version_ignores_the_alias(stack: LocalServices, versions: dict[str, int], tmp_path: Path) -> None:
    settings = ScoringSettings(home=tmp_path, registry_url=stack.url("registry"), scoring_model=MODEL,
                               scoring_version=versions["v1"], log_format="text", log_level="WARNING")
    with TestClient(create_app(settings), headers=AUTH) as client:
        answer = client.post("/v1/predict", content=solid(RED)).json()
        status = client.get("/v1/model").json()
    assert (answer["version"], answer["alias"]) == (versions["v1"], f"v{versions['v1']}")
    assert status["serving"] == f"{MODEL}@{versions['v1']}"


@pytest.mark.e2e
def test_the_default_variant_serves_int8_on_a_cpu_when_the_version_has_one(
        stack: LocalServices, versions: dict[str, int], tmp_path: Path) -> None:
    served = {}
    for name in ("v1", "v2"):
        settings = ScoringSettings(home=tmp_path, registry_url=stack.url("registry"), scoring_model=MODEL,
                                   scoring_version=versions[name], log_format="text", log_level="WARNING")
        assert settings.scoring_variant == "auto"
        with TestClient(create_app(settings), headers=AUTH) as client:
            answer = client.post("/v1/predict", content=solid(RED)).json()
            status = client.get("/v1/model").json()
        assert answer["label"] == "red" and status["variant_note"] is None
        served[name] = (answer["variant"], status["model"]["variant"], status["model"]["provider"])
        assert status["model"]["max_batch_size"] == settings.resolved_max_batch_size(variant=answer["variant"],
                                                                                    gpu=False)
    # Version 1 has no INT8 file: fp32 without a warning; version 2 has one: INT8, never its fp16 file (the GPUs'
    # variant) on a CPU.
    assert served == {"v1": ("fp32", "fp32", "CPUExecutionProvider"), "v2": ("int8", "int8", "CPUExecutionProvider")}


@pytest.mark.e2e
def test_an_empty_variant_setting_means_auto_and_an_unknown_one_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    monkeypatch.setenv("VISIONDOCK_SCORING_VARIANT", "")  # what the Helm chart passes by default
    assert ScoringSettings().scoring_variant == "auto"
    monkeypatch.setenv("VISIONDOCK_SCORING_VARIANT", "int4")
    with pytest.raises(ValidationError, match="scoring_variant") as refused:
        ScoringSettings()
    assert all(name in str(refused.value) for name in ("'auto'", "'fp32'", "'int8'", "'fp16'"))
    # The service says so in the variable's name and stops, instead of a traceback.
    done = subprocess.run([sys.executable, "-m", "services.scoring"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "VISIONDOCK_HOME": str(tmp_path)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: invalid setting(s):\n  VISIONDOCK_SCORING_VARIANT: Input should be 'auto'")


@pytest.mark.e2e
def test_a_named_variant_is_served_from_its_own_file(stack: LocalServices, registry: RegistryClient,
                                                     versions: dict[str, int], tmp_path: Path) -> None:
    registered = registry.get_version(MODEL, versions["v2"])
    files = {"fp32": registered["artifact"]["sha256"]} | {v: a["sha256"] for v, a in registered["variants"].items()}
    answers = {}
    for variant in ("fp32", "int8", "fp16"):
        settings = ScoringSettings(home=tmp_path, registry_url=stack.url("registry"), scoring_model=MODEL,
                                   scoring_version=versions["v2"], scoring_variant=variant, log_format="text",
                                   log_level="WARNING")
        with TestClient(create_app(settings), headers=AUTH) as client:
            answers[variant] = client.post("/v1/predict", content=solid(RED)).json()
            status = client.get("/v1/model").json()
        assert (answers[variant]["variant"], status["model"]["variant"], status["variant_note"]) == \
            (variant, variant, None)
        assert status["model"]["sha256"] == files[variant]
    # The fp16 file is the fp32 graph in float16 (ONNX Runtime's conversion): the same answers to about 1e-3.
    fp32, fp16 = ({p["label"]: p["probability"] for p in answers[v]["predictions"]} for v in ("fp32", "fp16"))
    assert answers["fp16"]["label"] == answers["fp32"]["label"] == "red" and fp16 == pytest.approx(fp32, abs=2e-3)


@pytest.mark.e2e
def test_the_default_variant_serves_fp32_where_int8_is_not_faster(
        stack: LocalServices, registry: RegistryClient, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # As on some CPUs: the INT8 file runs slower than the fp32 one (here by its busywork).
    metadata = {"task": "multiclass", "labels": tiny_models.COLOURS, "project_id": MODEL}
    slow_int8 = registry.register_version(
        MODEL, tiny_models.classifier(tmp_path / "fp32.onnx", gain=12.0), metadata,
        variants={"int8": tiny_models.classifier(tmp_path / "int8.onnx", gain=11.0, busywork=2)})
    version = int(slow_int8["version"])
    settings = ScoringSettings(home=tmp_path, registry_url=stack.url("registry"), scoring_model=MODEL,
                               scoring_version=version, log_format="text", log_level="INFO")
    with TestClient(create_app(settings), headers=AUTH) as client:
        answer = client.post("/v1/predict", content=solid(RED)).json()
        status = client.get("/v1/model").json()
    assert (answer["label"], answer["variant"], status["model"]["variant"]) == ("red", "fp32", "fp32")
    assert status["model"]["max_batch_size"] == settings.resolved_max_batch_size(variant="fp32", gpu=False)
    note = status["variant_note"]
    assert note.startswith(f"version {version}'s INT8 variant is not faster on this CPU (INT8 ") and \
        note.endswith("; serving the fp32 file"), note
    timed = [line for line in capfd.readouterr().err.splitlines() if "on this CPU: INT8" in line]
    assert len(timed) == 1 and timed[0].endswith("; serving fp32"), timed  # the operator's log says it too
    # The two timings in the note: INT8, then fp32, in ms an image; the busywork makes INT8 the slower.
    int8_ms, fp32_ms = (float(part.split(" ms")[0]) for part in note.split("(INT8 ")[1].split(", fp32 "))
    assert int8_ms > fp32_ms


def test_a_file_says_which_variant_it_is(serve: AppFactory, models: dict[str, Path], tmp_path: Path) -> None:
    # An edge install serving files: the trainer's stamp, not the registry, says which variant it is,
    # and so which batch size it runs.
    from services.trainer.half_precision import convert_fp16
    from services.trainer.quantize import quantize_int8

    fp32 = models["multiclass"]
    size = tiny_models.SIZE
    calibration = np.stack([to_tensor(Image.new("RGB", (size, size), colour), PreprocessSpec(size=size, resize=size))
                            for colour in (RED, GREEN, BLUE, GREY)])
    int8 = quantize_int8(fp32, tmp_path / "colours.int8.onnx", calibration)
    fp16 = convert_fp16(fp32, tmp_path / "colours.fp16.onnx")
    settings = ScoringSettings()
    for path, variant in ((fp32, "fp32"), (int8, "int8"), (fp16, "fp16")):
        with serve(path) as client:
            served = client.get("/v1/model").json()["model"]
            assert client.post("/v1/predict", content=solid(RED)).json()["label"] == "red"
        assert served["variant"] == variant
        assert served["max_batch_size"] == settings.resolved_max_batch_size(variant=variant, gpu=False)


def worker_processes(pid: int) -> list[int]:
    """The processes whose parent is `pid`, but multiprocessing's resource tracker (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"resource_tracker" not in command:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.e2e
def test_worker_processes_share_the_port_and_each_serve_the_model(stack: LocalServices,
                                                                  versions: dict[str, int]) -> None:
    env = {"VISIONDOCK_SCORING_WORKERS": "2", "VISIONDOCK_SCORING_VERSION": str(versions["v2"]),
           "VISIONDOCK_SCORING_VARIANT": "auto"}
    with stack.another("scoring", "scoring-workers", env=env) as scoring:
        # Every worker loads its own copy: ready only once a run of probes (spread by the kernel) all are.
        wait_for(lambda: all(serving_version(scoring.url, versions["v2"], slot=f"v{versions['v2']}")
                             for _ in range(8)), "both scoring workers")
        assert len(worker_processes(scoring.pid)) == 2

        def predict(colour: tuple[int, int, int]) -> tuple[int, str, str]:
            answer = httpx.post(f"{scoring.url}/v1/predict", content=solid(colour), headers=AUTH, timeout=30)
            return answer.status_code, answer.json()["label"], answer.json()["variant"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(predict, [RED, BLUE] * 16))
        assert answers == [(200, "red", "int8"), (200, "blue", "int8")] * 16

        # Connections opened in one burst, as a load generator or a proxy's pool opens them, are spread
        # over the workers (each listens on its own SO_REUSEPORT socket); with one shared socket the
        # first worker awake accepted them all.
        host, port = scoring.url.removeprefix("http://").rsplit(":", 1)
        burst = [socket.create_connection((host, int(port)), timeout=30) for _ in range(128)]
        try:
            for connection in burst:
                connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            for connection in burst:
                assert connection.recv(64).startswith(b"HTTP/1.1 200")
            held = connections_held(int(port), worker_processes(scoring.pid))
        finally:
            for connection in burst:
                connection.close()
        serving = list(held.values())
        # The kernel hashes each connection to a socket: 64 each on average, under 40 about once in 85,000 runs.
        assert sum(serving) == 128 and len(serving) == 2 and min(serving) >= 40, held

        # A worker that dies is replaced, and the port keeps answering meanwhile.
        lost = next(pid for pid, count in held.items() if count)
        os.kill(lost, signal.SIGKILL)
        assert predict(RED) == (200, "red", "int8")
        wait_for(lambda: lost not in worker_processes(scoring.pid) and len(worker_processes(scoring.pid)) == 2
                 and all(serving_version(scoring.url, versions["v2"], slot=f"v{versions['v2']}") for _ in range(8)),
                 "a replacement scoring worker")


def test_workers_refuse_a_port_another_server_shares(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Another server of this user already listening with SO_REUSEPORT, as our workers do.
    taken = listening_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        # A shared bind would succeed beside it (and split the traffic without a word) ...
        listening_socket("127.0.0.1", port, listen=False).close()
        # ... so the pool checks with an unshared one, and the service exits saying why.
        with pytest.raises(OSError):
            WorkerPool("services.scoring.app:create_app", 2, {"host": "127.0.0.1", "port": port}).check_port()
        monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path))
        with pytest.raises(SystemExit) as exited:
            serve("scoring", create_app, ["--port", str(port)], workers=2)
        assert exited.value.code == 1
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err
    finally:
        taken.close()


def connections_held(port: int, pids: list[int]) -> dict[int, int]:
    """How many established TCP connections to `port` each process holds (Linux /proc)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
            established.add(f"socket:[{fields[9]}]")
    held = {}
    for pid in pids:
        targets = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                targets.append(os.readlink(fd))
        held[pid] = sum(1 for target in targets if target in established)
    return held


def test_onnx_runtime_threads_divide_the_available_cpus_among_the_workers() -> None:
    cpus = available_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    # By default one worker per 4 CPUs (at least one), and one on a GPU.
    assert ScoringSettings().resolved_workers(gpu=False) == max(1, cpus // 4)
    assert ScoringSettings().resolved_workers(gpu=True) == 1
    assert ScoringSettings(scoring_workers=3).resolved_workers(gpu=True) == 3


@pytest.mark.parametrize(("cpus", "workers", "runners", "threads"), [
    (1, 1, 1, 1), (2, 1, 2, 1), (16, 1, 4, 4), (16, 2, 4, 2), (16, 16, 1, 1), (6, 1, 4, 1),
    # The default: one worker per 4 CPUs.
    (2, 0, 2, 1), (6, 0, 4, 1), (16, 0, 4, 1), (32, 0, 4, 1)])
def test_each_worker_runs_batches_on_runners_sharing_its_cpus(monkeypatch: pytest.MonkeyPatch, cpus: int,
                                                              workers: int, runners: int, threads: int) -> None:
    monkeypatch.setattr(scoring_settings, "available_cpus", lambda: cpus)
    settings = ScoringSettings(scoring_workers=workers)
    assert settings.resolved_batch_runners(gpu=False) == runners
    assert settings.resolved_intra_op_threads(gpu=False) == threads
    # A GPU runs one batch at a time; its host threads get the worker's CPUs.
    assert settings.resolved_batch_runners(gpu=True) == 1
    assert settings.resolved_intra_op_threads(gpu=True) == max(1, cpus // (workers or 1))
    chosen = ScoringSettings(scoring_workers=workers, scoring_batch_runners=3, scoring_intra_op_threads=5)
    assert (chosen.resolved_batch_runners(gpu=False), chosen.resolved_intra_op_threads(gpu=False)) == (3, 5)
    # An fp32 model on a CPU shares one batch of 8 among the runners (its activations do not grow with
    # them); INT8 and a GPU batch 8; a chosen size is kept.
    assert settings.resolved_max_batch_size(variant="fp32", gpu=False) == 8 // runners
    assert settings.resolved_max_batch_size(variant="int8", gpu=False) == 8
    assert settings.resolved_max_batch_size(variant="fp32", gpu=True) == 8
    sized = ScoringSettings(scoring_workers=workers, scoring_max_batch_size=16)
    assert sized.resolved_max_batch_size(variant="fp32", gpu=False) == 16


@pytest.mark.e2e
def test_captured_predictions_land_in_the_review_queue(stack: LocalServices, registry: RegistryClient,
                                                       versions: dict[str, int]) -> None:
    registry.set_alias(MODEL, "production", versions["v2"])
    with stack.another("scoring", "scoring-capture", env={"VISIONDOCK_SCORING_CAPTURE_RATE": "1",
                                                          "VISIONDOCK_SCORING_VARIANT": ""}) as capturing:
        wait_for(lambda: serving_version(capturing.url, versions["v2"]), "the capturing scoring service")
        with AnnotationClient(stack.url("annotation"), LOCAL_DEV_API_KEY) as annotation:
            annotation.create_project(MODEL, "multiclass", tags=tiny_models.COLOURS)
            for colour in (RED, GREY, BLUE):
                answer = httpx.post(f"{capturing.url}/v1/predict", content=solid(colour), headers=AUTH)
                assert answer.status_code == 200
            items = wait_for(lambda: (found := list(annotation.list_review_items(MODEL))) and len(found) == 3
                             and found, "three captured predictions in the review queue")
            assert [item["prediction"]["label"] for item in items][1:] in (["red", "blue"], ["blue", "red"])
            grey = items[0]  # the coin toss comes first
            assert grey["prediction"]["uncertain"] is True and grey["version"] == versions["v2"]
            accepted = annotation.accept_review_item(MODEL, grey["id"], tags=["green"])
            assert accepted["image"]["tags"] == ["green"]
            rejected = annotation.reject_review_item(MODEL, items[1]["id"], reason="duplicate")
            assert rejected["status"] == "rejected"
            assert [i["id"] for i in annotation.list_review_items(MODEL)] == [items[2]["id"]]
        # One copy of each image (the review item's), and a summary each for the production report.
        blobs = stack.home / "blobs" / "data"
        assert len(list((blobs / "review" / MODEL).iterdir())) == 3
        assert not (blobs / "captures").exists()
        documents = SqliteDocumentStore(stack.home / "documents.sqlite3")
        with contextlib.closing(documents):
            summaries = list(documents.query_all(CAPTURES, Query(partition_key=MODEL)))
        assert sorted(s.id for s in summaries) == sorted(i["id"] for i in items)
        assert all("image" not in s.data and s.data["project_id"] == MODEL for s in summaries)


def test_capture_never_fails_a_request_when_annotation_is_down(serve: AppFactory, models: dict[str, Path],
                                                              tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with serve(models["multiclass"], scoring_capture_rate=1.0, scoring_capture_project="colours",
               annotation_url=closed) as client:
        for colour in (RED, GREEN, BLUE):
            assert client.post("/v1/predict", content=solid(colour)).status_code == 200

        def failed_three() -> bool:
            text = client.get("/metrics").text
            return 'visiondock_scoring_captures_total{outcome="send_failed"} 3.0' in text

        wait_for(failed_three, "three failed hand-overs", timeout=60)
        metrics = client.get("/metrics").text
    assert 'visiondock_scoring_captures_total{outcome="stored"} 3.0' in metrics
    # The summaries are kept for the production report; no image is kept anywhere but a review item.
    documents = SqliteDocumentStore(tmp_path / "documents.sqlite3")
    with contextlib.closing(documents):
        assert len(list(documents.query_all(CAPTURES, Query(partition_key="colours")))) == 3
    assert not (tmp_path / "blobs" / "data" / "captures").exists()


@pytest.mark.e2e
def test_registry_outage_keeps_serving_and_a_restart_uses_the_verified_cache(
        stack: LocalServices, versions: dict[str, int]) -> None:
    url = stack.url("scoring")
    stack.processes["registry"].stop()

    state = wait_for(lambda: (s := readiness(url)).get("registry_reachable") is False and s,
                     "readyz to report the registry unreachable")
    assert state["status"] == "ready" and "cannot reach the registry" in state["error"]
    answer = httpx.post(f"{url}/v1/predict", content=solid(GREEN), headers=AUTH)
    assert answer.status_code == 200 and answer.json()["label"] == "green"
    assert ('visiondock_scoring_registry_reachable{slot="production"} 0.0'
            in httpx.get(f"{url}/metrics", headers=AUTH).text)

    # A process started during the outage serves what was served last, once its checksum verifies.
    with stack.another("scoring", "scoring-restart") as restarted:
        wait_for(lambda: serving_version(restarted.url, versions["v2"]), "the restarted service")
        assert readiness(restarted.url)["model"]["source"] == "cache"
        assert httpx.post(f"{restarted.url}/v1/predict", content=solid(RED), headers=AUTH).json()["label"] == "red"
    for cached in (stack.home / "model-cache" / MODEL).glob(f"{versions['v2']}-int8-*.onnx"):
        cached.write_bytes(cached.read_bytes()[:-10] + b"corrupted!")
    # Answering at all means it has tried to load (uvicorn serves after the app's startup).
    with stack.another("scoring", "scoring-corrupt-cache") as corrupt:
        state = readiness(corrupt.url)
        assert state["status"] == "not ready" and state["model"] is None
        assert httpx.post(f"{corrupt.url}/v1/predict", content=solid(RED), headers=AUTH).status_code == 503
