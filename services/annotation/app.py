"""The annotation service: projects, tags, images and their labels, and the review queue of
predictions the scoring service captured.

`create_app()` builds the FastAPI app; `python -m services.annotation` serves it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from visiondock.settings import Settings
from visiondock.storage import Stores
from visiondock.web import create_service_app

from .images import ImageLibrary
from .projects import ProjectCatalog
from .review import ReviewQueue
from .review_routes import router as review_router
from .routes import router


def _parts(stores: Stores) -> dict[str, Any]:
    projects = ProjectCatalog(stores.documents)
    images = ImageLibrary(stores.documents, stores.blobs, projects)
    return {"projects": projects, "images": images,
            "review": ReviewQueue(stores.documents, stores.blobs, projects, images)}


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        service="annotation",
        settings=settings or Settings(),
        description="Projects, tags, images and their labels (tags or boxes); a review queue of captured "
                    "predictions.",
        routers=[router, review_router],
        parts=_parts,
    )
