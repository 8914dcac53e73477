"""HTTP routes that explain versions to a person: lineage, comparisons and production behaviour."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from visiondock.web import require_api_key

from .dependencies import Model, Registry
from .lineage_view import lineage_of

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["versions"])


@router.get("/models/{model}/versions/{version}/lineage",
            summary="What the version learned from (dataset snapshot with label revisions and content hash), "
                    "its parameters, code version and parent version, and how its data differs from the parent's")
def version_lineage(model: Model, version: int, registry: Registry) -> dict:
    return lineage_of(registry, model, version)
