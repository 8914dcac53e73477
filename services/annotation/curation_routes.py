"""HTTP routes of tag renames and deletes, bulk tag and split changes, bulk deletes, and project deletion:
thin wrappers over Curation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from visiondock.web import require_role

from .curation_schemas import (
    BulkDelete,
    BulkDeleted,
    BulkResults,
    BulkSplit,
    BulkTags,
    ProjectDeleted,
    TagRename,
    TagUsage,
)
from .dependencies import Curator
from .schemas import ProjectPath, TagPath

# Tags and bulk changes are labeling; deleting a whole project (its images and labels) is an admin's.
router = APIRouter(prefix="/v1/projects/{project_id}",
                   dependencies=[Depends(require_role("label", readers=("train",)))])
_ADMIN = [Depends(require_role("admin"))]
Confirm = Annotated[bool, Query(description="Go on although images are affected (otherwise 409 says how many).")]


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"updated": sum(r["status"] == "updated" for r in results),
            "unchanged": sum(r["status"] == "unchanged" for r in results),
            "failed": sum(r["status"] in ("not_found", "rejected") for r in results), "results": results}


@router.get("/tags/{tag}", response_model=TagUsage, tags=["tags"], summary="A tag and how many images carry it")
def get_tag(project_id: ProjectPath, tag: TagPath, curation: Curator) -> dict[str, Any]:
    return curation.tag(project_id, tag)


@router.post("/tags/{tag}/rename", response_model=TagUsage, tags=["tags"],
             summary="Rename a tag on every image (409 when the new name exists, unless `merge`)")
def rename_tag(project_id: ProjectPath, tag: TagPath, body: TagRename, curation: Curator) -> dict[str, Any]:
    return curation.rename_tag(project_id, tag, body.name, merge=body.merge)


@router.delete("/tags/{tag}", response_model=TagUsage, tags=["tags"],
               summary="Delete a tag; 409 naming how many images carry it unless `confirm=true`",
               responses={409: {"description": "Images carry the tag (`code`: tag_in_use)."}})
def delete_tag(project_id: ProjectPath, tag: TagPath, curation: Curator, confirm: Confirm = False) -> dict[str, Any]:
    return curation.delete_tag(project_id, tag, confirm=confirm)


@router.post("/images/bulk/tags", response_model=BulkResults, tags=["images"],
             summary="Add and remove tags on many images; one result per image")
def bulk_tags(project_id: ProjectPath, body: BulkTags, curation: Curator) -> dict[str, Any]:
    return _summary(curation.bulk_tags(project_id, body.image_ids, add=body.add, remove=body.remove))


@router.post("/images/bulk/split", response_model=BulkResults, tags=["images"],
             summary="Put many images in a split (or none); one result per image")
def bulk_split(project_id: ProjectPath, body: BulkSplit, curation: Curator) -> dict[str, Any]:
    return _summary(curation.bulk_split(project_id, body.image_ids, body.split))


@router.post("/images/bulk/delete", response_model=BulkDeleted, tags=["images"],
             summary="Delete many images (bytes, thumbnail and labels), as DELETE …/images/{id} does each; "
                     "one result per image")
def bulk_delete(project_id: ProjectPath, body: BulkDelete, curation: Curator) -> dict[str, Any]:
    results = curation.bulk_delete(project_id, body.image_ids)
    return {"deleted": sum(r["status"] == "deleted" for r in results),
            "failed": sum(r["status"] != "deleted" for r in results), "results": results}


@router.delete("", response_model=ProjectDeleted, tags=["projects"],
               summary="Delete a project with its images, thumbnails, tags and review items; 409 unless "
                       "`confirm=true` when it has images",
               responses={409: {"description": "The project has images (`code`: project_not_empty)."}},
               dependencies=_ADMIN)
def delete_project(project_id: ProjectPath, curation: Curator, confirm: Confirm = False) -> dict[str, Any]:
    return curation.delete_project(project_id, confirm=confirm)
