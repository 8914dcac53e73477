"""HTTP routes of the annotation service: thin wrappers over ProjectCatalog and ImageLibrary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from visiondock.auth import EVERYTHING, by_body
from visiondock.errors import DomainError, InvalidInput
from visiondock.limits import body_limit
from visiondock.schemas import ErrorBody, Page, PageSize
from visiondock.web import IfMatch, caller_name, require_role

from .dependencies import Catalog, Library
from .history import LabelChange
from .images import MAX_FILES_PER_UPLOAD, MAX_UPLOAD_BYTES, UploadOutcome, public_image
from .schemas import (
    Image,
    ImagePath,
    ImageRegionsUpdate,
    ImageSplitUpdate,
    ImageTagsUpdate,
    Project,
    ProjectCreate,
    ProjectPath,
    ProjectStats,
    Split,
    Tag,
    TagCreate,
    TagList,
    UploadResponse,
)

# Labelers read and write; the trainer reads the labeled images.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("label", readers=("train",)))])


@router.post("/projects", status_code=201, response_model=Project, tags=["projects"],
             dependencies=[Depends(require_role("label", scope=by_body("id")))])
def create_project(body: ProjectCreate, catalog: Catalog) -> dict:
    return dict(catalog.create(body.id, body.type, description=body.description, tags=body.tags).document)


@router.get("/projects", response_model=Page[Project], tags=["projects"],
            dependencies=[Depends(require_role("label", readers=("train",), scope=EVERYTHING))])
def list_projects(catalog: Catalog, limit: PageSize = 100, continuation: str | None = None) -> dict:
    items, token = catalog.list(limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/projects/{project_id}", response_model=Project, tags=["projects"])
def get_project(project_id: ProjectPath, catalog: Catalog) -> dict:
    return dict(catalog.get(project_id).document)


@router.get("/projects/{project_id}/stats", response_model=ProjectStats, tags=["projects"])
def project_stats(project_id: ProjectPath, library: Library) -> dict:
    return library.stats(project_id)


@router.post("/projects/{project_id}/tags", status_code=201, response_model=Tag, tags=["tags"])
def create_tag(project_id: ProjectPath, body: TagCreate, catalog: Catalog) -> dict:
    return catalog.create_tag(project_id, body.name)


@router.get("/projects/{project_id}/tags", response_model=TagList, tags=["tags"])
def list_tags(project_id: ProjectPath, catalog: Catalog) -> dict:
    return {"data": catalog.list_tags(project_id)}


def _every_file_refused(outcomes: list[UploadOutcome]) -> DomainError:
    """The first file's kind of problem (so its status), naming each file's."""
    first = outcomes[0].problem
    assert first is not None
    message = "; ".join(f"{o.filename}: {o.error}" for o in outcomes)
    results = [{"filename": o.filename, "status": o.status, "error": o.error} for o in outcomes]
    return type(first)(message, code="upload_rejected", details={"results": results})


@router.post(
    "/projects/{project_id}/images",
    response_model=UploadResponse,
    tags=["images"],
    summary="Upload images (multipart field `files`, repeated)",
    dependencies=[Depends(body_limit(MAX_UPLOAD_BYTES))],
    form_limits={"max_files": MAX_FILES_PER_UPLOAD, "max_fields": 8},
    responses={200: {"description": "Each file's outcome: created, duplicate (same bytes already in the "
                                    "project) or rejected with the reason."},
               400: {"model": ErrorBody, "description": "Every file was rejected (or 413, 415, 422: the first "
                                                        "file's reason); `results` says why for each."}},
)
def upload_images(
    project_id: ProjectPath,
    library: Library,
    request: Request,
    files: Annotated[list[UploadFile], File(description="Image files: JPEG, PNG, BMP, GIF or WebP.")],
    tags: Annotated[str | None, Form(description="Comma-separated tags to put on every uploaded image.")] = None,
    split: Annotated[Split | None, Form(description="Keep these images in the train or the test split.")] = None,
) -> dict:
    # Read at most one byte past the limit: enough to know a file is too big without holding it all.
    payload = [(f.filename or "upload", f.file.read(library.max_bytes + 1)) for f in files]
    tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
    outcomes = library.upload(project_id, payload, tags=tag_list, split=split,
                              change=LabelChange(who=caller_name(request), source="upload"))
    if all(o.problem is not None for o in outcomes):
        raise _every_file_refused(outcomes)
    return {
        "created": sum(o.status == "created" for o in outcomes),
        "duplicates": sum(o.status == "duplicate" for o in outcomes),
        "rejected": sum(o.status == "rejected" for o in outcomes),
        "results": [{"filename": o.filename, "status": o.status, "image": o.image, "error": o.error}
                    for o in outcomes],
    }


def _bool_param(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {value!r}")


@router.get("/projects/{project_id}/images", response_model=Page[Image], tags=["images"])
def list_images(
    project_id: ProjectPath,
    library: Library,
    labeled: Annotated[str | None, Query(description="true: labeled images only; false: unlabeled only")] = None,
    tag: Annotated[str | None, Query(description="Only images carrying this tag")] = None,
    split: Annotated[str | None, Query(pattern="^(train|test|none)$")] = None,
    limit: PageSize = 100,
    continuation: str | None = None,
) -> dict:
    docs, token = library.list(project_id, labeled=_bool_param(labeled, "labeled"), tag=tag, split=split,
                               limit=limit, continuation=continuation)
    return {"data": [public_image(d) for d in docs], "continuation": token}


@router.get("/projects/{project_id}/images/{image_id}", response_model=Image, tags=["images"])
def get_image(project_id: ProjectPath, image_id: ImagePath, library: Library) -> dict:
    return public_image(library.get(project_id, image_id))


@router.get("/projects/{project_id}/images/{image_id}/content", tags=["images"],
            response_class=StreamingResponse, summary="The image's bytes as uploaded")
def get_image_content(project_id: ProjectPath, image_id: ImagePath, library: Library) -> StreamingResponse:
    chunks, content_type, size = library.content(project_id, image_id)
    return StreamingResponse(chunks, media_type=content_type, headers={"Content-Length": str(size)})


@router.put("/projects/{project_id}/images/{image_id}/tags", response_model=Image, tags=["images"])
def set_image_tags(project_id: ProjectPath, image_id: ImagePath, body: ImageTagsUpdate, library: Library,
                   request: Request,
                   if_match: IfMatch = None) -> dict:
    return public_image(library.set_tags(project_id, image_id, body.tags, if_match=if_match,
                                         change=LabelChange(who=caller_name(request))))


@router.put("/projects/{project_id}/images/{image_id}/regions", response_model=Image, tags=["images"])
def set_image_regions(project_id: ProjectPath, image_id: ImagePath, body: ImageRegionsUpdate, library: Library,
                      request: Request, if_match: IfMatch = None) -> dict:
    regions = [region.model_dump() for region in body.regions]
    return public_image(library.set_regions(project_id, image_id, regions, if_match=if_match,
                                            change=LabelChange(who=caller_name(request))))


@router.put("/projects/{project_id}/images/{image_id}/split", response_model=Image, tags=["images"])
def set_image_split(project_id: ProjectPath, image_id: ImagePath, body: ImageSplitUpdate, library: Library,
                    if_match: IfMatch = None) -> dict:
    return public_image(library.set_split(project_id, image_id, body.split, if_match=if_match))


@router.delete("/projects/{project_id}/images/{image_id}", status_code=204, tags=["images"])
def delete_image(project_id: ProjectPath, image_id: ImagePath, library: Library, if_match: IfMatch = None) -> None:
    library.delete(project_id, image_id, if_match=if_match)
