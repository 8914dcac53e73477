"""A registry app on either document backend: SQLite, or Cosmos DB on the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.registry.app import create_app
from visiondock.auth import new_key
from visiondock.settings import Settings

# A key of the tests' own: the built-in development key is refused beside Azure backends.
TEST_KEY, TEST_KEY_ENTRY = new_key("registry-tests", ["admin"])
VERSION_METADATA = {"task": "multiclass", "labels": ["cat", "dog"], "metrics": {"accuracy": 0.91},
                    "splits": {"train": ["a", "b"], "test": ["c"]}}


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for the test's `backend` param: embedded SQLite, or a fresh Cosmos DB database."""
    if request.param == "sqlite":
        return Settings(home=tmp_path, log_format="text", log_level="WARNING", api_keys=[],
                        api_key_entries=TEST_KEY_ENTRY)
    server = request.getfixturevalue("cosmosdb_server")
    database = request.getfixturevalue("cosmos_database")
    return Settings(home=tmp_path, log_format="text", log_level="WARNING", document_backend="cosmos",
                    cosmos_endpoint=server.endpoint, cosmos_key=server.key, cosmos_database=database,
                    cosmos_endpoint_discovery=False, api_keys=[], api_key_entries=TEST_KEY_ENTRY)


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.azure)])
def any_backend_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The registry over HTTP (in process) on each document backend in turn."""
    with TestClient(create_app(backend_settings(request, tmp_path)),
                    headers={"X-API-Key": TEST_KEY}) as client:
        yield client


def register_version(client: TestClient, model: str, payload: bytes, **metadata: object) -> dict:
    response = client.post(f"/v1/models/{model}/versions", files={"model": ("model.onnx", payload)},
                           data={"metadata": json.dumps({**VERSION_METADATA, **metadata})})
    assert response.status_code == 201, response.text
    return response.json()
