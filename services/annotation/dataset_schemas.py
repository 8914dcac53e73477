"""Request and response bodies of dataset import and export (`dataset_routes.py`)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field

from .datasets import FORMAT_NAMES
from .schemas import Split

# The formats of `datasets.FORMATS`, spelled out so that type checkers read them too.
FormatName = Literal["folder", "coco", "voc", "yolo", "csv", "product"]
if get_args(FormatName) != FORMAT_NAMES:
    raise RuntimeError(f"FormatName {get_args(FormatName)} differs from the dataset formats {FORMAT_NAMES}")


class DatasetFormatInfo(BaseModel):
    name: str
    summary: str
    carries_boxes: bool = Field(description="Whether it can label a detection project.")
    exports: list[str] = Field(description="Project types it can export.")


class DatasetFormatList(BaseModel):
    data: list[DatasetFormatInfo]


class PathReason(BaseModel):
    path: str
    reason: str


class PathNote(BaseModel):
    path: str
    note: str


class ImportConflict(BaseModel):
    path: str
    image_id: str
    reason: str


class ImportReport(BaseModel):
    format: str
    images: int = Field(description="Distinct images found (the same photo twice counts once).")
    created: int = Field(description="Images new to the project.")
    duplicates: int = Field(description="Images the project already had (same bytes).")
    labeled: int = Field(description="Images whose labels this import set.")
    unchanged: int = Field(description="Images already labeled as the dataset says: nothing written.")
    unlabeled: int = Field(description="Images in the project without labels after the import (the dataset "
                                       "says nothing about them).")
    boxes: int = Field(description="Boxes stored.")
    tags_created: list[str]
    skipped: list[PathReason] = Field(description="What was not imported, and why.")
    conflicts: list[ImportConflict] = Field(description="Images already labeled otherwise: their labels were kept.")
    notes: list[PathNote] = Field(description="Everything else worth knowing: repeated images merged, boxes "
                                              "outside their image, tag names refused.")


class SampleBox(BaseModel):
    tag: str = Field(max_length=200)
    x1: float
    y1: float
    x2: float
    y2: float
    normalized: bool = Field(default=False, description="Fractions of the image's size instead of pixels.")


class SampleLabels(BaseModel):
    path: str = Field(min_length=1, max_length=1024, description="The image's path in the dataset.")
    tags: list[str] = Field(default_factory=list, max_length=500)
    boxes: list[SampleBox] = Field(default_factory=list, max_length=1000)
    labeled: bool = Field(default=True, description="False: the dataset says nothing about this image.")


class SampleManifest(BaseModel):
    """What the `files` of an import batch are: the i-th sample describes the i-th file."""

    format: FormatName = Field(description="The format the client read (it decides whether boxes are expected).")
    classes: list[str] = Field(default_factory=list, max_length=10_000,
                               description="Tag names the dataset declares, created even when unused.")
    samples: list[SampleLabels]
    split: Split | None = Field(default=None, description="Put new images in this split.")
    replace_labels: bool = Field(default=False, description="Relabel images already labeled otherwise.")


class ExportRequest(BaseModel):
    format: FormatName
    split: Literal["train", "test", "none"] | None = Field(default=None, description="Only this split's images.")
    image_ids: list[str] | None = Field(default=None, description="Exactly these images (a dataset snapshot); "
                                                                  "unlabeled ones are left out.")
