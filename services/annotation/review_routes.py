"""HTTP routes of the review queue: thin wrappers over ReviewQueue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import Json

from visiondock.limits import body_limit
from visiondock.schemas import Page, PageSize
from visiondock.web import IfMatch, caller_name, require_role

from .dependencies import Queue
from .schemas import (
    ItemPath,
    ProjectPath,
    ReviewAccept,
    ReviewAccepted,
    ReviewCapture,
    ReviewItem,
    ReviewReject,
    ReviewReopened,
)

router = APIRouter(prefix="/v1/projects/{project_id}/review-items", tags=["review"],
                   dependencies=[Depends(require_role("label"))])


@router.put("/{item_id}", response_model=ReviewItem, status_code=201,
            summary="Hand over a captured prediction (the scoring service does); a repeat answers 200",
            responses={200: {"model": ReviewItem, "description": "The item already existed."}},
            dependencies=[Depends(body_limit(lambda app: app.state.images.max_bytes + 1024 * 1024))],
            form_limits={"max_files": 1, "max_fields": 2})
def submit_item(
    project_id: ProjectPath,
    item_id: ItemPath,
    queue: Queue,
    image: Annotated[UploadFile, File(description="The image as it was scored.")],
    capture: Annotated[Json[ReviewCapture], Form(description="JSON: model, version, task, uncertainty, "
                                                             "prediction, ...")],
    response: Response,
) -> dict:
    data = image.file.read(queue.library.max_bytes + 1)
    item, created = queue.submit(project_id, item_id, data, capture.model_dump(), filename=image.filename or item_id)
    if not created:
        response.status_code = 200
    return item


@router.get("", response_model=Page[ReviewItem], summary="Captured predictions, most uncertain first")
def list_items(
    project_id: ProjectPath,
    queue: Queue,
    status: Annotated[str, Query(pattern="^(pending|accepted|rejected|all)$")] = "pending",
    limit: PageSize = 100,
    continuation: str | None = None,
) -> dict:
    docs, token = queue.list(project_id, status=None if status == "all" else status, limit=limit,
                             continuation=continuation)
    return {"data": [{**d.data, "etag": d.etag} for d in docs], "continuation": token}


@router.get("/{item_id}", response_model=ReviewItem)
def get_item(project_id: ProjectPath, item_id: ItemPath, queue: Queue) -> dict:
    doc = queue.get(project_id, item_id)
    return {**doc.data, "etag": doc.etag}


@router.get("/{item_id}/content", response_class=StreamingResponse, summary="The captured image's bytes")
def get_item_content(project_id: ProjectPath, item_id: ItemPath, queue: Queue) -> StreamingResponse:
    chunks, content_type, size = queue.content(project_id, item_id)
    return StreamingResponse(chunks, media_type=content_type, headers={"Content-Length": str(size)})


@router.post("/{item_id}/accept", response_model=ReviewAccepted,
             summary="Accept: the image joins the project, labeled as sent (or as predicted when the body is empty)")
def accept_item(project_id: ProjectPath, item_id: ItemPath, queue: Queue, request: Request, if_match: IfMatch = None,
                body: Annotated[ReviewAccept | None, Body()] = None) -> dict:
    body = body or ReviewAccept()
    regions = [r.model_dump() for r in body.regions] if body.regions is not None else None
    return queue.accept(project_id, item_id, tags=body.tags, regions=regions, if_match=if_match,
                        who=caller_name(request))


@router.post("/{item_id}/reject", response_model=ReviewItem, summary="Reject: the item is marked rejected")
def reject_item(project_id: ProjectPath, item_id: ItemPath, queue: Queue, if_match: IfMatch = None,
                body: Annotated[ReviewReject | None, Body()] = None) -> dict:
    return queue.reject(project_id, item_id, reason=(body or ReviewReject()).reason, if_match=if_match)


@router.post("/{item_id}/reopen", response_model=ReviewReopened,
             summary="Undo a decision: the item is pending again; an image an accept labeled gets its labels back")
def reopen_item(project_id: ProjectPath, item_id: ItemPath, queue: Queue, request: Request,
                if_match: IfMatch = None) -> dict:
    return queue.reopen(project_id, item_id, if_match=if_match, who=caller_name(request))
