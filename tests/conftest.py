"""Shared fixtures. The emulator servers start once per test session, on first use, and
stop at its end; every test gets its own blob container or Cosmos database in them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress

import pytest

from tests.support.emulators import (
    AzuriteBlobServer,
    CosmosDbServer,
    EmulatorUnavailableError,
    start_azurite_blob,
    start_cosmosdb_server,
    unavailable,
)


@pytest.fixture(scope="session")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteBlobServer]:
    """Azurite's Blob Storage emulator (skipped without node/npm packages, failed on CI)."""
    try:
        server = start_azurite_blob(tmp_path_factory.mktemp("azurite"))
    except EmulatorUnavailableError as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cosmosdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosmosDbServer]:
    """The cosmosdb-server Cosmos DB emulator over plain HTTP (skipped or failed as above)."""
    try:
        server = start_cosmosdb_server(tmp_path_factory.mktemp("cosmosdb"))
    except EmulatorUnavailableError as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def azure_blob_container(azurite_blob: AzuriteBlobServer) -> Iterator[str]:
    """A fresh container name in Azurite; the container is deleted after the test."""
    try:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobServiceClient
    except ImportError:
        unavailable("azure-storage-blob is not installed (pip install -e '.[azure]')")
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    with BlobServiceClient.from_connection_string(azurite_blob.connection_string) as service, suppress(
        ResourceNotFoundError  # the test never created it
    ):
        service.delete_container(name)


@pytest.fixture
def cosmos_database(cosmosdb_server: CosmosDbServer) -> Iterator[str]:
    """A fresh database name in cosmosdb-server; the database is deleted after the test."""
    try:
        from azure.cosmos import CosmosClient
        from azure.cosmos.exceptions import CosmosResourceNotFoundError
    except ImportError:
        unavailable("azure-cosmos is not installed (pip install -e '.[azure]')")
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    with CosmosClient(
        cosmosdb_server.endpoint, credential=cosmosdb_server.key, enable_endpoint_discovery=False
    ) as client, suppress(CosmosResourceNotFoundError):
        client.delete_database(name)
