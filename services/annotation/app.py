"""The annotation service: projects, tags, images and their labels, and the review queue of
predictions the scoring service captured.

`create_app()` builds the FastAPI app; `python -m services.annotation` serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from visiondock.settings import Settings
from visiondock.storage import open_blob_store, open_document_store
from visiondock.web import Readiness, create_service_app

from .curation_routes import router as curation_router
from .dataset_routes import router as dataset_router
from .images import ImageLibrary
from .projects import ProjectCatalog
from .review import ReviewQueue
from .review_routes import router as review_router
from .routes import router
from .style_routes import router as style_router


def _readiness(app: FastAPI) -> Readiness:
    ready = getattr(app.state, "images", None) is not None
    return Readiness(ready, {"storage": "open" if ready else "starting"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        documents = open_document_store(settings)
        blobs = open_blob_store(settings)
        projects = ProjectCatalog(documents)
        app.state.projects = projects
        app.state.images = ImageLibrary(documents, blobs, projects)
        app.state.review = ReviewQueue(documents, blobs, projects, app.state.images)
        try:
            yield
        finally:
            app.state.images = None
            documents.close()
            blobs.close()

    app = create_service_app(
        service="annotation",
        settings=settings,
        description="Projects, tags, images and their labels (tags or boxes); a review queue of captured "
                    "predictions.",
        readiness=_readiness,
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(review_router)
    app.include_router(style_router)
    app.include_router(dataset_router)
    app.include_router(curation_router)
    return app
