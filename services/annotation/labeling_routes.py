"""HTTP routes of model-assisted labeling, label history and thumbnails: thin wrappers over
Suggestions, LabelHistory and Thumbnails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from visiondock.schemas import Page, PageSize
from visiondock.web import IfMatch, caller_name, require_role

from .dependencies import Capture, History, Library, Suggester, ThumbnailStore
from .images import public_image
from .schemas import (
    Image,
    ImagePath,
    LabelHistoryEntry,
    ProjectPath,
    ReviewCaptureStatus,
    SuggestRequest,
    SuggestResponse,
)

router = APIRouter(prefix="/v1/projects/{project_id}",
                   dependencies=[Depends(require_role("label", readers=("train",)))])


@router.get("/images/{image_id}/history", response_model=Page[LabelHistoryEntry], tags=["history"],
            summary="Every change of the image's labels, newest first: who, when, before, after, source")
def image_history(project_id: ProjectPath, image_id: ImagePath, history: History, library: Library,
                  limit: PageSize = 100, continuation: str | None = None) -> dict:
    library.get(project_id, image_id)  # 404 for an unknown project or image
    items, token = history.list(project_id, image_id, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/images/{image_id}/thumbnail", tags=["images"], response_class=Response,
            summary="A JPEG of the image, longest side 256 px (made once, then kept)",
            responses={200: {"content": {"image/jpeg": {}}}})
def image_thumbnail(project_id: ProjectPath, image_id: ImagePath, thumbnails: ThumbnailStore) -> Response:
    # The id is the SHA-256 of the image's bytes: its thumbnail never changes.
    return Response(thumbnails.get(project_id, image_id), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


@router.post("/suggest", response_model=SuggestResponse, tags=["suggestions"],
             summary="Ask the served model for labels of chosen images (or the unlabeled ones); "
                     "they are stored as suggestions, not labels")
def suggest(project_id: ProjectPath, body: SuggestRequest, suggestions: Suggester) -> dict:
    return suggestions.suggest(project_id, model=body.model, alias=body.alias, image_ids=body.image_ids,
                               limit=body.limit)


@router.get("/suggestions", response_model=Page[Image], tags=["suggestions"],
            summary="Images whose suggestion awaits a person")
def awaiting_review(project_id: ProjectPath, suggestions: Suggester, limit: PageSize = 100,
                    continuation: str | None = None) -> dict:
    docs, token = suggestions.pending(project_id, limit=limit, continuation=continuation)
    return {"data": [public_image(d) for d in docs], "continuation": token}


@router.post("/images/{image_id}/suggestion/accept", response_model=Image, tags=["suggestions"],
             summary="The suggestion becomes the image's labels (history source `suggestion`)")
def accept_suggestion(project_id: ProjectPath, image_id: ImagePath, suggestions: Suggester, request: Request,
                      if_match: IfMatch = None,
                      empty: Annotated[bool, Query(description="Accept a suggestion that proposes nothing (no box, "
                                                               "no tag): the image is labeled as showing nothing "
                                                               "of the project.")] = False) -> dict:
    return public_image(suggestions.accept(project_id, image_id, who=caller_name(request), if_match=if_match,
                                           empty=empty))


@router.delete("/images/{image_id}/suggestion", response_model=Image, tags=["suggestions"],
               summary="Drop the suggestion; the labels stay as they are")
def dismiss_suggestion(project_id: ProjectPath, image_id: ImagePath, suggestions: Suggester) -> dict:
    return public_image(suggestions.dismiss(project_id, image_id))


@router.get("/review-capture", response_model=ReviewCaptureStatus, tags=["review"],
            summary="Whether the scoring service captures predictions for review, and at what rate")
def review_capture(project_id: ProjectPath, library: Library, capture: Capture) -> dict:
    library.projects.get(project_id)  # 404 for an unknown project
    return capture.for_project(project_id)
