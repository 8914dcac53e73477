"""HTTP routes of dataset import and export: thin wrappers over DatasetImporter and DatasetExporter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from visiondock.auth import NOTHING
from visiondock.errors import InvalidContent, InvalidInput, TooLarge
from visiondock.limits import body_limit
from visiondock.web import require_role

from .dataset_export import DatasetExporter
from .dataset_import import ImportOptions
from .dataset_schemas import (
    DatasetFormatList,
    ExportRequest,
    FormatName,
    ImportReport,
    SampleManifest,
)
from .datasets import (
    FORMATS,
    ArchiveError,
    ArchiveLimits,
    Box,
    DatasetFormatError,
    DatasetRead,
    Sample,
    ZipSource,
    get_format,
)
from .dependencies import Exporter, Importer
from .images import MAX_FILES_PER_UPLOAD
from .schemas import ProjectPath, Split

MAX_ARCHIVE_BYTES = 4 * 1024 * 1024 * 1024
MAX_BATCH_BYTES = 256 * 1024 * 1024
# Room for the multipart framing and the form fields beside the files.
FORM_OVERHEAD_BYTES = 1024 * 1024
# A snapshot export lists its image ids (64 hex digits each): room for some 200,000.
MAX_EXPORT_REQUEST_BYTES = 16 * 1024 * 1024
NDJSON = "application/x-ndjson"

# Labelers import and export; the trainer (train keys) may read the formats and export.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("label", readers=("train",)))], tags=["datasets"])


@router.get("/dataset-formats", response_model=DatasetFormatList, summary="The formats import and export speak",
            dependencies=[Depends(require_role("label", readers=("train",), scope=NOTHING))])
def list_formats() -> dict[str, Any]:
    return {"data": [{"name": f.name, "summary": f.summary, "carries_boxes": f.carries_boxes,
                      "exports": sorted(f.exports)} for f in FORMATS.values()]}


def _answer(request: Request, events: Iterator[dict[str, Any]]) -> Any:
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse((json.dumps(event) + "\n" for event in events), media_type=NDJSON)
    return next(e["report"] for e in events if e["event"] == "report")


@router.post(
    "/projects/{project_id}/imports", response_model=ImportReport,
    summary="Import a dataset from a zip archive (folder, coco, voc, yolo, csv or product layout)",
    responses={200: {"content": {NDJSON: {}}, "description": "The report; with `Accept: application/x-ndjson`, "
                     "one progress line per image (`{\"event\": \"progress\", \"done\", \"total\"}`) then "
                     "`{\"event\": \"report\", \"report\": …}`."},
               400: {"description": "Not a zip archive, an unsafe one, or not the named format."},
               413: {"description": "Over the archive's limits (size, entries, a zip bomb)."}},
    # The archive is the one large body of this service: its own limit, checked before reading.
    dependencies=[Depends(body_limit(MAX_ARCHIVE_BYTES + FORM_OVERHEAD_BYTES))],
    form_limits={"max_files": 1, "max_fields": 4},
)
def import_archive(
    project_id: ProjectPath,
    request: Request,
    importer: Importer,
    archive: Annotated[UploadFile, File(description="A zip archive of the dataset.")],
    dataset_format: Annotated[FormatName, Form(alias="format", description="How the dataset is laid out.")],
    split: Annotated[Split | None, Form(description="Put new images in this split.")] = None,
    replace_labels: Annotated[bool, Form(description="Relabel images already labeled otherwise.")] = False,
) -> Any:
    fmt = get_format(dataset_format)
    project = importer.check_format(project_id, fmt)
    if archive.size is not None and archive.size > MAX_ARCHIVE_BYTES:
        raise TooLarge(f"the archive is {archive.size:,} bytes; the limit is {MAX_ARCHIVE_BYTES:,}")
    try:
        source = ZipSource(archive.file, ArchiveLimits())
        found = fmt.read(source)
    except ArchiveError as exc:
        raise (TooLarge if exc.too_large else InvalidInput)(str(exc), code="invalid_archive") from None
    except DatasetFormatError as exc:
        raise InvalidInput(f"not a {fmt.name} dataset: {exc}", code="invalid_dataset") from None
    options = ImportOptions(split=split, replace_labels=replace_labels)
    return _answer(request, importer.events(project, fmt, found, source.read, options))


@router.post(
    "/projects/{project_id}/imports/samples", response_model=ImportReport,
    summary="Import a batch of images with their labels, as read by a client (`visiondock import`)",
    dependencies=[Depends(body_limit(MAX_BATCH_BYTES + FORM_OVERHEAD_BYTES))],
    form_limits={"max_files": MAX_FILES_PER_UPLOAD, "max_fields": 2},
)
def import_samples(
    project_id: ProjectPath,
    request: Request,
    importer: Importer,
    files: Annotated[list[UploadFile], File(description="The images; the i-th is described by samples[i].")],
    manifest: Annotated[str, Form(description="JSON: format, classes, samples (path, tags, boxes, labeled), "
                                              "split, replace_labels.")],
) -> Any:
    try:
        parsed = SampleManifest.model_validate_json(manifest)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidContent(f"manifest is invalid: {problems}") from None
    if len(files) != len(parsed.samples):
        raise InvalidInput(f"{len(files)} files but {len(parsed.samples)} samples; send one sample per file")
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise InvalidInput(f"at most {MAX_FILES_PER_UPLOAD} files per batch; got {len(files)}")
    contents: dict[str, bytes] = {}
    total = 0
    for upload, sample in zip(files, parsed.samples, strict=True):
        if sample.path in contents:
            raise InvalidInput(f"{sample.path!r} appears twice in the batch")
        contents[sample.path] = upload.file.read(importer.library.max_bytes + 1)
        total += len(contents[sample.path])
        if total > MAX_BATCH_BYTES:
            raise TooLarge(f"the batch is over {MAX_BATCH_BYTES:,} bytes; send smaller batches")
    found = DatasetRead([Sample(s.path, list(s.tags), [Box(**b.model_dump()) for b in s.boxes], s.labeled)
                         for s in parsed.samples], list(parsed.classes))
    options = ImportOptions(split=parsed.split, replace_labels=parsed.replace_labels)
    return _answer(request, importer.events(project_id, get_format(parsed.format), found, contents.__getitem__,
                                            options))


def _zip_response(exporter: DatasetExporter, project_id: str, dataset_format: str, split: str | None,
                  image_ids: list[str] | None) -> StreamingResponse:
    plan = exporter.plan(project_id, get_format(dataset_format), split=split, image_ids=image_ids)
    headers = {"Content-Disposition": f'attachment; filename="{plan.filename}"',
               "X-Image-Count": str(len(plan.documents)), "X-Left-Out": str(plan.left_out)}
    return StreamingResponse(exporter.stream(plan), media_type="application/zip", headers=headers)


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The archive, streamed. `X-Image-Count`: images in "
          "it; `X-Left-Out`: unlabeled images of the selection, or negatives the format cannot carry."}}


@router.get("/projects/{project_id}/export", response_class=StreamingResponse, responses=_EXPORT_RESPONSES,
            summary="Export the labeled images as a zip archive in a dataset format")
def export_dataset(
    project_id: ProjectPath,
    exporter: Exporter,
    dataset_format: Annotated[FormatName, Query(alias="format")],
    split: Annotated[str | None, Query(pattern="^(train|test|none)$")] = None,
) -> StreamingResponse:
    return _zip_response(exporter, project_id, dataset_format, split, None)


# A snapshot export reads (a POST only for its long id list): train keys export as they do with GET.
@router.post("/projects/{project_id}/export", response_class=StreamingResponse, responses=_EXPORT_RESPONSES,
             summary="Export a chosen set of images (a dataset snapshot) as a zip archive",
             dependencies=[Depends(require_role("label", "train")), Depends(body_limit(MAX_EXPORT_REQUEST_BYTES))])
def export_snapshot(project_id: ProjectPath, body: ExportRequest, exporter: Exporter) -> StreamingResponse:
    return _zip_response(exporter, project_id, body.format, body.split, body.image_ids)
