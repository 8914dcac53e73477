"""VISIONDOCK_METRICS_PORT: a port of its own that answers GET /metrics without a key, for a Prometheus
scraper (the chart's PodMonitor), while the API port's /metrics keeps needing one."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from services.registry.app import create_app
from visiondock.settings import LOCAL_DEV_API_KEY, Settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_metrics_port_answers_without_a_key_and_serves_nothing_else(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(home=tmp_path, log_format="text", log_level="WARNING", metrics_port=port)
    with TestClient(create_app(settings)) as api:
        assert api.get("/healthz").status_code == 200
        assert api.get("/metrics").status_code == 401  # the API port's /metrics still needs a key
        assert api.get("/metrics", headers={"X-API-Key": LOCAL_DEV_API_KEY}).status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert 'visiondock_service_info{service="registry"} 1.0' in scraped.text
        assert 'route="/healthz"' in scraped.text  # the app's own registry, with what it served
        for path in ("/v1/models", "/healthz", "/"):
            assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 404
        # A second process of the service (a scoring worker) serves its own on the same port.
        other = Settings(home=tmp_path / "other", log_format="text", log_level="WARNING", metrics_port=port)
        with TestClient(create_app(other)):
            assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):  # gone with the app
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_no_metrics_port_unless_asked(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).metrics_port is None
    with pytest.raises(ValueError, match="metrics_port"):
        Settings(home=tmp_path, metrics_port=70000)
