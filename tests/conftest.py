"""Shared fixtures, each started once per test session on first use and stopped at its end:
the services as real processes (`services` and a client of each), shared by every test that
needs real processes (marked `e2e`), and the emulator servers (marked `azure`), in which every
test gets its own blob container or Cosmos database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress

import pytest

from cli.local_services import LocalServices
from tests.support.emulators import (
    AzuriteBlobServer,
    CosmosDbServer,
    EmulatorUnavailableError,
    start_azurite_blob,
    start_cosmosdb_server,
    unavailable,
)
from tests.support.stack import SERVED_MODEL, SHARED_ENV, running_services
from visiondock.clients import AnnotationClient, RegistryClient, ScoringClient
from visiondock.settings import LOCAL_DEV_API_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test on the shared processes is an e2e test, one on the emulators an azure test, marked or not:
    # the fast loop never starts them.
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "services" in fixtures:
            item.add_marker(pytest.mark.e2e)
        if "azurite_blob" in fixtures or "cosmosdb_server" in fixtures:
            item.add_marker(pytest.mark.azure)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """Annotation, registry and scoring as uvicorn processes; the scoring service follows SERVED_MODEL.
    Tests keep to their own projects and models; one that needs other settings starts its own
    process beside these (`services.another(...)`)."""
    with running_services(tmp_path_factory.mktemp("visiondock-home"), scoring_model=SERVED_MODEL,
                          env=SHARED_ENV) as local:
        yield local


@pytest.fixture(scope="session")
def annotation(services: LocalServices) -> Iterator[AnnotationClient]:
    with AnnotationClient(services.url("annotation"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="session")
def registry(services: LocalServices) -> Iterator[RegistryClient]:
    with RegistryClient(services.url("registry"), LOCAL_DEV_API_KEY) as client:
        yield client


@pytest.fixture(scope="session")
def scoring(services: LocalServices) -> Iterator[ScoringClient]:
    with ScoringClient(services.url("scoring"), LOCAL_DEV_API_KEY) as client:
        yield client


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
