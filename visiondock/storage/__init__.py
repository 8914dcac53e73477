"""Storage interfaces and the factory that picks a backend from settings.

`BlobStore` (bytes: images, model artifacts) and `DocumentStore` (JSON documents:
projects, labels, model versions, metrics) each have an embedded backend (files,
SQLite) and an Azure backend (Blob Storage, Cosmos DB). The Azure SDKs are imported
only when configured, so the embedded setup needs none of them.
"""

from __future__ import annotations

from typing import Any

from visiondock.settings import Settings
from visiondock.storage.blobs import (
    BlobError,
    BlobExistsError,
    BlobInfo,
    BlobNotFoundError,
    BlobStore,
    InvalidBlobKeyError,
)
from visiondock.storage.documents import (
    MAX_BATCH_DOCUMENTS,
    ConflictError,
    Document,
    DocumentError,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    InvalidQueryError,
    Page,
    PreconditionFailedError,
    Query,
)

__all__ = [
    "MAX_BATCH_DOCUMENTS",
    "BlobError",
    "BlobExistsError",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStore",
    "ConflictError",
    "Document",
    "DocumentError",
    "DocumentExistsError",
    "DocumentNotFoundError",
    "DocumentStore",
    "Filter",
    "InvalidBlobKeyError",
    "InvalidQueryError",
    "Page",
    "PreconditionFailedError",
    "Query",
    "Stores",
    "open_blob_store",
    "open_document_store",
]


def azure_credential() -> Any:
    """The process's Azure identity: workload identity in a pod (AZURE_CLIENT_ID, AZURE_TENANT_ID and
    AZURE_FEDERATED_TOKEN_FILE, injected by the webhook), a managed identity, or a developer's login."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def open_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_backend == "azure":
        from visiondock.storage.blobs_azure import AzureBlobStore

        if settings.azure_storage_connection_string is not None:
            return AzureBlobStore(
                settings.azure_storage_connection_string.get_secret_value(),
                container=settings.azure_storage_container,
            )
        return AzureBlobStore(account_url=settings.azure_storage_account_url, credential=azure_credential(),
                              container=settings.azure_storage_container)
    from visiondock.storage.blobs_local import LocalBlobStore

    return LocalBlobStore(settings.resolved_blob_root)


def open_document_store(settings: Settings) -> DocumentStore:
    if settings.document_backend == "cosmos":
        from visiondock.storage.documents_cosmos import CosmosDocumentStore

        assert settings.cosmos_endpoint is not None  # checked by Settings
        return CosmosDocumentStore(
            endpoint=settings.cosmos_endpoint,
            key=settings.cosmos_key.get_secret_value() if settings.cosmos_key is not None else None,
            credential=azure_credential() if settings.cosmos_key is None else None,
            database=settings.cosmos_database,
            verify_tls=settings.cosmos_verify_tls,
            endpoint_discovery=settings.cosmos_endpoint_discovery,
        )
    from visiondock.storage.documents_sqlite import SqliteDocumentStore

    return SqliteDocumentStore(settings.resolved_sqlite_path)


class Stores:
    """A service's stores, each opened on first use; `close()` closes what was opened.

    The app factory (`visiondock.web.create_service_app`) makes one per process and closes
    it at shutdown, so a service that never touches a store never needs its settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._documents: DocumentStore | None = None
        self._blobs: BlobStore | None = None

    @property
    def documents(self) -> DocumentStore:
        if self._documents is None:
            self._documents = open_document_store(self.settings)
        return self._documents

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            self._blobs = open_blob_store(self.settings)
        return self._blobs

    def close(self) -> None:
        for store in (self._documents, self._blobs):
            if store is not None:
                store.close()
        self._documents = self._blobs = None
