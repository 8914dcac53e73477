"""The service clients repeat what is safe to repeat, and a training Job waits out a registry or annotation
service that is restarting (a rollout, a node drain) instead of failing for good (exit 3 is final for the
Job's podFailurePolicy)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from visiondock.clients import RegistryClient, ServiceError, ServiceUnavailableError
from visiondock.settings import LOCAL_DEV_API_KEY, Settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def flaky_server(failures: int) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that answers 503 to the first `failures` requests, then 200 with `{}`."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(f"{self.command} {self.path}")
            status, body = (503, b'{"detail": "restarting"}') if len(seen) <= failures else (200, b'{"next": 1}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PATCH = do_POST = do_GET = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_call_that_may_be_repeated_is_and_one_that_may_not_is_not() -> None:
    with flaky_server(failures=2) as (url, seen), RegistryClient(url, "key", retry_seconds=10) as client:
        client.update_run("run-1", stage="train")  # PATCH of a progress report: the same state however often
        assert seen == ["PATCH /v1/runs/run-1"] * 3
    with flaky_server(failures=1) as (url, seen), RegistryClient(url, "key", retry_seconds=10) as client:
        with pytest.raises(ServiceUnavailableError):
            client.append_run_log("run-1", ["a line"])  # a POST that reached the service: never twice
        assert seen == ["POST /v1/runs/run-1/logs"]


def test_a_request_that_never_connected_is_repeated_whatever_its_method(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with serve_later(registry_app(tmp_path), port, after=1.5), \
            RegistryClient(url, LOCAL_DEV_API_KEY, retry_seconds=30) as client:
        run = client.create_run("flowers")  # POST /v1/runs while nothing listens yet
    assert run["status"] == "queued" and time.monotonic() - started >= 1.5
    with RegistryClient(url, LOCAL_DEV_API_KEY, retries=2) as client, pytest.raises(ServiceUnavailableError,
                                                                                    match="cannot reach"):
        client.create_run("flowers")  # and given up after its attempts


def registry_app(home: Path):  # type: ignore[no-untyped-def]
    from services.registry.app import create_app

    return create_app(Settings(home=home / "registry", log_format="text", log_level="WARNING"))


def annotation_app(home: Path):  # type: ignore[no-untyped-def]
    from services.annotation.app import create_app

    return create_app(Settings(home=home / "annotation", log_format="text", log_level="WARNING"))


@contextmanager
def serve_later(app: object, port: int, *, after: float) -> Iterator[None]:
    """Serve `app` with uvicorn on `port`, starting `after` seconds from now (a service coming back)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=lambda: (time.sleep(after), server.run()), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_a_training_job_waits_for_services_that_are_restarting(tmp_path: Path) -> None:
    from services.trainer.__main__ import EXIT_BAD_DATA, main

    with TestClient(annotation_app(tmp_path), headers={"X-API-Key": LOCAL_DEV_API_KEY}) as annotation:
        assert annotation.post("/v1/projects", json={"id": "empty", "type": "multiclass"}).status_code == 201
    annotation_port, registry_port = free_port(), free_port()
    started = time.monotonic()
    with serve_later(annotation_app(tmp_path), annotation_port, after=3.0), \
            serve_later(registry_app(tmp_path), registry_port, after=3.0):
        code = main(["--project", "empty", "--no-progress", "--annotation-url", f"http://127.0.0.1:{annotation_port}",
                     "--registry-url", f"http://127.0.0.1:{registry_port}"])
        # The trainer reached both once they were back: its verdict is about the data (2), not the outage (3),
        # and the run it created says why.
        assert code == EXIT_BAD_DATA and time.monotonic() - started >= 3.0
        with RegistryClient(f"http://127.0.0.1:{registry_port}", LOCAL_DEV_API_KEY) as registry:
            (run,) = registry.list_runs(model="empty")
        assert run["status"] == "failed" and "no labeled images" in run["error"]


def test_an_answer_that_is_not_the_object_a_call_expects_is_a_clear_service_error() -> None:
    # A proxy or an older service answering a list where the client reads an object: the caller gets a
    # ServiceError naming the call, not a list it would index as a dict later.
    app = FastAPI()

    @app.get("/v1/runs/{run_id}")
    def a_list_instead(run_id: str) -> list[str]:
        return [run_id]

    with TestClient(app) as http, RegistryClient("http://testserver", LOCAL_DEV_API_KEY, http=http,
                                                 retries=1) as client:
        with pytest.raises(ServiceError, match="GET /v1/runs/r1: expected a JSON object, got list"):
            client.get_run("r1")
        assert client.get_json("/v1/runs/r1") == ["r1"]  # the untyped read still answers whatever came
