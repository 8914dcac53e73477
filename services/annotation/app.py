"""The annotation service: projects, tags, images and their labels, and the review queue of
predictions the scoring service captured.

`create_app()` builds the FastAPI app; `python -m services.annotation` serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from visiondock.openapi_docs import Link, document_api
from visiondock.settings import Settings
from visiondock.storage import open_blob_store, open_document_store
from visiondock.web import Readiness, create_service_app

from .images import ImageLibrary
from .projects import ProjectCatalog
from .review import ReviewQueue
from .review_routes import router as review_router
from .routes import router


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
    document_api(app, links=LINKS)
    return app


_PROJECT = "/v1/projects/{project_id}"
LINKS = [
    Link(("POST", "/v1/projects"), 201, ("GET", _PROJECT), {"project_id": "$response.body#/id"}),
    Link(("POST", f"{_PROJECT}/tags"), 201, ("GET", f"{_PROJECT}/tags"), {"project_id": "$request.path.project_id"}),
    Link(("POST", f"{_PROJECT}/images"), 200, ("GET", f"{_PROJECT}/images/{{image_id}}"),
         {"project_id": "$request.path.project_id", "image_id": "$response.body#/results/0/image/id"}),
    Link(("PUT", f"{_PROJECT}/review-items/{{item_id}}"), 201, ("GET", f"{_PROJECT}/review-items/{{item_id}}"),
         {"project_id": "$request.path.project_id", "item_id": "$response.body#/id"}),
]
