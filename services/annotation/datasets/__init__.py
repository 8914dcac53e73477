"""Dataset formats: readers and writers of labeled images, one module per format.

Used by the annotation service (zip import and export) and by the command line (which reads a
folder with the same readers and sends images and labels through the API). See docs/datasets.md.
"""

from __future__ import annotations

from .base import (
    SUFFIX_BY_CONTENT_TYPE,
    Box,
    DatasetFormat,
    DatasetFormatError,
    DatasetRead,
    DatasetSource,
    ExportImage,
    Member,
    Sample,
    Skipped,
    merge_same_images,
)
from .coco import CocoFormat
from .csvfile import CsvFormat
from .folder import FolderFormat
from .product import ProductFormat
from .sources import ArchiveError, ArchiveLimits, FolderSource, ZipSource
from .voc import VocFormat
from .yolo import YoloFormat
from .zipstream import stream_zip

FORMATS: dict[str, DatasetFormat] = {fmt.name: fmt for fmt in (
    FolderFormat(), CocoFormat(), VocFormat(), YoloFormat(), CsvFormat(), ProductFormat())}
FORMAT_NAMES = tuple(FORMATS)


def get_format(name: str) -> DatasetFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise DatasetFormatError(f"unknown format {name!r}; use one of {', '.join(FORMATS)}") from None


__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "SUFFIX_BY_CONTENT_TYPE",
    "ArchiveError",
    "ArchiveLimits",
    "Box",
    "DatasetFormat",
    "DatasetFormatError",
    "DatasetRead",
    "DatasetSource",
    "ExportImage",
    "FolderSource",
    "Member",
    "Sample",
    "Skipped",
    "ZipSource",
    "get_format",
    "merge_same_images",
    "stream_zip",
]
