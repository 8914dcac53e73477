"""A registry app on either document backend: SQLite, or Cosmos DB on the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.registry.app import create_app
from tests.support.keys import AZURE_KEY_SETTINGS, AZURE_TEST_KEY
from visiondock.settings import LOCAL_DEV_API_KEY, Settings

VERSION_METADATA = {"task": "multiclass", "labels": ["cat", "dog"], "metrics": {"accuracy": 0.91},
                    "splits": {"train": ["a", "b"], "test": ["c"]}}


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the test's `backend` param: embedded SQLite, or a fresh Cosmos DB database."""
    if request.param == "sqlite":
        return Settings(home=tmp_path, log_format="text", log_level="WARNING")
    server = request.getfixturevalue("cosmosdb_server")
    database = request.getfixturevalue("cosmos_database")
    return Settings(home=tmp_path, log_format="text", log_level="WARNING", document_backend="cosmos",
                    cosmos_endpoint=server.endpoint, cosmos_key=server.key, cosmos_database=database,
                    cosmos_endpoint_discovery=False, **AZURE_KEY_SETTINGS)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.azure)])
def any_backend_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The registry over HTTP (in process) on each document backend in turn."""
    settings = backend_settings(request, tmp_path)
    key = AZURE_TEST_KEY if settings.uses_azure else LOCAL_DEV_API_KEY
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:
        yield client


def register_version(client: TestClient, model: str, payload: bytes, **metadata: object) -> dict:
    response = client.post(f"/v1/models/{model}/versions", files={"model": ("model.onnx", payload)},
                           data={"metadata": json.dumps({**VERSION_METADATA, **metadata})})
    assert response.status_code == 201, response.text
    return response.json()
