"""`python -m visiondock.storage.provision`: create what the configured storage needs before the
services start — the blob container, the Cosmos DB database and one container per collection.

The Helm chart runs it as a pre-install/pre-upgrade hook Job. It opens the stores exactly as the
services do, so the creation code is the backends' own (`AzureBlobStore` creates its container,
`CosmosDocumentStore` its database and, through `prepare_collections`, its containers). Safe to run
again: what exists is left as it is. With the embedded backends it only makes the directories.

A Microsoft Entra ID principal (workload identity) may read and write Cosmos DB items but not create
databases or containers, which are control-plane operations: create them with Azure's tools
(docs/deploy-aks.md) and this command then only checks they are there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from visiondock.settings import Settings
from visiondock.storage import BlobError, DocumentError, open_blob_store, open_document_store
from visiondock.telemetry import configure_logging

# Every document collection the services use (tests/common/test_provision.py keeps it in step with them).
COLLECTIONS = ("projects", "tags", "tag_changes", "images", "label_history", "review_items", "captures", "models",
               "model_versions", "model_aliases", "alias_history", "training_runs", "run_logs")

log = logging.getLogger("visiondock.provision")


def provision(settings: Settings) -> dict[str, object]:
    """Open both stores (creating the blob container and database) and create every collection."""
    blobs = open_blob_store(settings)
    blobs.close()
    documents = open_document_store(settings)
    try:
        documents.prepare_collections(COLLECTIONS)
    finally:
        documents.close()
    return {"blob_backend": settings.blob_backend, "document_backend": settings.document_backend,
            "collections": list(COLLECTIONS)}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m visiondock.storage.provision",
                            description="Create the blob container, the database and its collections.").parse_args(argv)
    settings = Settings()
    configure_logging("provision", level=settings.log_level, fmt=settings.log_format)
    try:
        summary = provision(settings)
    except (BlobError, DocumentError) as exc:
        log.error("storage could not be prepared: %s", exc)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
