"""A scoring process stopped with SIGTERM (what Kubernetes sends after the preStop wait, on every rollout
and rollback) answers every request it had accepted, then exits; new connections are refused, not
dropped half-way. A real uvicorn process under concurrent load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from cli.local_services import free_port
from visiondock.settings import LOCAL_DEV_API_KEY

from . import tiny_models

pytestmark = pytest.mark.e2e

CLIENTS = 48


def test_sigterm_answers_every_accepted_request_then_exits(tmp_path: Path) -> None:
    model = tiny_models.classifier(tmp_path / "colours.onnx", model_name="colours")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Batches wait up to 400 ms for company, so the requests are still in progress when SIGTERM comes.
    env = {**os.environ, "VISIONDOCK_HOME": str(tmp_path / "home"), "VISIONDOCK_SCORING_MODEL_PATH": str(model),
           "VISIONDOCK_SCORING_MAX_QUEUE_DELAY_MS": "400", "VISIONDOCK_SCORING_MAX_BATCH_SIZE": "64",
           "VISIONDOCK_API_KEYS": LOCAL_DEV_API_KEY, "VISIONDOCK_LOG_FORMAT": "text"}
    log = (tmp_path / "scoring.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "services.scoring", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "scoring.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the scoring process did not become ready"
            time.sleep(0.1)

        image = tiny_models.solid((200, 30, 30))
        outcomes: list[str] = []
        sent = threading.Barrier(CLIENTS + 1)

        def client() -> None:
            # One connection per request, opened before SIGTERM: each request is accepted.
            with httpx.Client(base_url=url, headers={"X-API-Key": LOCAL_DEV_API_KEY}, timeout=30) as http:
                http.get("/healthz")  # the connection is open and served
                sent.wait()
                try:
                    answer = http.post("/v1/predict", files={"file": ("red.jpg", image, "image/jpeg")})
                    outcomes.append(f"{answer.status_code} {answer.json()['model']}")
                except httpx.HTTPError as exc:
                    outcomes.append(f"error {type(exc).__name__}")

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        sent.wait()
        time.sleep(0.15)  # the requests are in, waiting in the batcher
        os.killpg(process.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        for thread in threads:
            thread.join(timeout=30)

        assert Counter(outcomes) == Counter({"200 colours": CLIENTS}), Counter(outcomes)
        # uvicorn drains, shuts the app down, then exits by the signal it caught (what Kubernetes expects).
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert "Finished server process" in (tmp_path / "scoring.log").read_text()
        assert time.monotonic() - stopped_at < 15  # well inside the pod's grace period
        with pytest.raises(httpx.ConnectError):  # after it: refused, so a client retries elsewhere
            httpx.get(f"{url}/healthz", timeout=1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
