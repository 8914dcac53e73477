"""The registry service: model versions, their files and metrics, and aliases.

`create_app()` builds the FastAPI app; `python -m services.registry` serves it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from visiondock.settings import Settings
from visiondock.storage import Stores
from visiondock.web import create_service_app

from .alias_routes import router as alias_router
from .catalog import ModelCatalog
from .dashboard import router as dashboard_router
from .insight_routes import router as insight_router
from .routes import router
from .run_routes import router as run_router


def _parts(stores: Stores) -> dict[str, Any]:
    return {"catalog": ModelCatalog(stores.documents, stores.blobs)}


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        service="registry",
        settings=settings or Settings(),
        description="Model versions with their ONNX files and metrics, and the aliases that deploy them.",
        routers=[router, alias_router, run_router, insight_router, dashboard_router],
        parts=_parts,
    )
