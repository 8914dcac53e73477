"""The annotation service: projects, tags, images and their labels, and the review queue of
predictions the scoring service captured.

`create_app()` builds the FastAPI app; `python -m services.annotation` serves it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from visiondock.openapi_docs import Link, document_api
from visiondock.settings import Settings
from visiondock.storage import Stores
from visiondock.web import create_service_app

from .capture_status import CaptureStatus
from .curation_routes import router as curation_router
from .dataset_routes import router as dataset_router
from .history import LabelHistory
from .images import ImageLibrary
from .labeling_routes import router as labeling_router
from .projects import ProjectCatalog
from .review import ReviewQueue
from .review_routes import router as review_router
from .routes import router
from .style_routes import router as style_router
from .suggestions import Suggestions
from .thumbnails import Thumbnails
from .webapp import OPEN_PATHS as APP_PAGES
from .webapp import mount_app


def _parts(stores: Stores) -> dict[str, Any]:
    settings = stores.settings
    projects = ProjectCatalog(stores.documents)
    history = LabelHistory(stores.documents)
    images = ImageLibrary(stores.documents, stores.blobs, projects, history=history)
    return {"projects": projects, "images": images, "history": history,
            "review": ReviewQueue(stores.documents, stores.blobs, projects, images),
            "thumbnails": Thumbnails(stores.blobs, images),
            "suggestions": Suggestions(images, scoring_url=settings.scoring_url,
                                       api_key=settings.api_key.get_secret_value()),
            "capture_status": CaptureStatus(scoring_url=settings.scoring_url,
                                            api_key=settings.api_key.get_secret_value())}


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(
        service="annotation",
        settings=settings or Settings(),
        description="Projects, tags, images and their labels (tags or boxes); a review queue of captured "
                    "predictions.",
        routers=[router, review_router, style_router, dataset_router, curation_router, labeling_router],
        parts=_parts,
        open_paths=APP_PAGES,
    )
    mount_app(app)
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
