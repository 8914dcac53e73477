"""The storage provisioning command the Helm chart's hook Job runs, against the embedded backends and
the Azure emulators; and the settings that sign in with an Azure identity instead of keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.annotation.history import LABEL_HISTORY
from services.annotation.images import IMAGES
from services.annotation.projects import PROJECTS, TAG_CHANGES, TAGS
from services.annotation.review import REVIEW_ITEMS
from services.registry.aliases import HISTORY
from services.registry.catalog import ALIASES, MODELS, VERSIONS
from services.registry.run_logs import RUN_LOGS
from services.registry.runs import RUNS
from tests.support.emulators import AzuriteBlobServer, CosmosDbServer
from visiondock.captures import CAPTURES
from visiondock.settings import Settings
from visiondock.storage.provision import COLLECTIONS, main, provision


def test_every_collection_a_service_uses_is_provisioned() -> None:
    assert set(COLLECTIONS) == {PROJECTS, TAGS, TAG_CHANGES, IMAGES, LABEL_HISTORY, REVIEW_ITEMS, CAPTURES, MODELS,
                                VERSIONS, ALIASES, HISTORY, RUNS, RUN_LOGS}


def test_embedded_storage_needs_only_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VISIONDOCK_HOME", str(tmp_path / "home"))
    assert main([]) == 0
    assert json.loads(capsys.readouterr().out)["document_backend"] == "sqlite"
    assert (tmp_path / "home" / "documents.sqlite3").exists()


@pytest.mark.azure
def test_creates_the_blob_container_database_and_collections_and_runs_again(
        azurite_blob: AzuriteBlobServer, azure_blob_container: str, cosmosdb_server: CosmosDbServer,
        cosmos_database: str) -> None:
    from azure.cosmos import CosmosClient
    from azure.storage.blob import BlobServiceClient

    settings = Settings(blob_backend="azure", azure_storage_connection_string=azurite_blob.connection_string,
                        azure_storage_container=azure_blob_container, document_backend="cosmos",
                        cosmos_endpoint=cosmosdb_server.endpoint, cosmos_key=cosmosdb_server.key,
                        cosmos_database=cosmos_database, cosmos_endpoint_discovery=False)
    for _ in range(2):  # a second run (every helm upgrade) finds everything there and changes nothing
        provision(settings)
    with BlobServiceClient.from_connection_string(azurite_blob.connection_string) as service:
        assert service.get_container_client(azure_blob_container).exists()
    with CosmosClient(cosmosdb_server.endpoint, credential=cosmosdb_server.key,
                      enable_endpoint_discovery=False) as client:
        database = client.get_database_client(cosmos_database)
        assert {c["id"] for c in database.list_containers()} == set(COLLECTIONS)


def test_azure_identity_needs_no_connection_string_or_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONDOCK_BLOB_BACKEND", "azure")
    monkeypatch.setenv("VISIONDOCK_AZURE_STORAGE_ACCOUNT_URL", "https://example.blob.core.windows.net")
    monkeypatch.setenv("VISIONDOCK_DOCUMENT_BACKEND", "cosmos")
    monkeypatch.setenv("VISIONDOCK_COSMOS_ENDPOINT", "https://example.documents.azure.com:443/")
    settings = Settings()
    assert settings.azure_storage_connection_string is None and settings.cosmos_key is None
