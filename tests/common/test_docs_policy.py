"""The API docs pages carry a content policy that keeps the browser from fetching anything outside
the service (ReDoc's CDN logo); other routes answer without it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from services.registry.app import create_app
from visiondock.settings import Settings
from visiondock.web import DOCS_CONTENT_POLICY


def test_docs_pages_and_only_they_carry_the_content_policy(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(home=tmp_path, log_format="text", log_level="WARNING"))) as client:
        for page in ("/docs", "/redoc"):
            response = client.get(page)
            assert response.status_code == 200 and response.headers["content-security-policy"] == DOCS_CONTENT_POLICY
        for path in ("/healthz", "/openapi.json"):
            assert "content-security-policy" not in client.get(path).headers
