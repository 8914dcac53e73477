"""Request and response bodies of tag, bulk and project changes (`curation_routes.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .schemas import Split, TagName


class TagUsage(BaseModel):
    name: str
    image_count: int = Field(description="Images carrying the tag (as a tag or on a box).")
    images_changed: int | None = Field(default=None, description="Images whose labels this change rewrote.")


class TagRename(BaseModel):
    name: TagName = Field(description="The new name.")
    merge: bool = Field(default=False, description="Allow renaming into an existing tag: the two become one.")


class BulkTags(BaseModel):
    image_ids: list[str] = Field(min_length=1, max_length=1000)
    add: list[TagName] = Field(default_factory=list, max_length=100,
                               description="Tags to put on each image (multiclass: the one tag it gets).")
    remove: list[str] = Field(default_factory=list, max_length=100)


class BulkSplit(BaseModel):
    image_ids: list[str] = Field(min_length=1, max_length=1000)
    split: Split | None


class BulkDelete(BaseModel):
    image_ids: list[str] = Field(min_length=1, max_length=1000)


class BulkResult(BaseModel):
    id: str
    status: Literal["updated", "unchanged", "deleted", "not_found", "rejected"]
    error: str | None = None


class BulkResults(BaseModel):
    updated: int
    unchanged: int
    failed: int
    results: list[BulkResult]


class BulkDeleted(BaseModel):
    deleted: int
    failed: int
    results: list[BulkResult]


class ProjectDeleted(BaseModel):
    project: str
    images_deleted: int
    review_items_deleted: int
    other_blobs_deleted: int = Field(description="Thumbnails and bytes without a document, swept by folder.")
