"""HTTP routes of the registry's models and versions: thin wrappers over ModelCatalog (aliases:
`alias_routes.py`; training runs: `run_routes.py`)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import Json

from visiondock.auth import EVERYTHING, ResourceScope
from visiondock.blob_keys import MODEL_FILE, variant_filename
from visiondock.errors import InvalidContent
from visiondock.limits import body_limit
from visiondock.schemas import Page, PageSize
from visiondock.vocabulary import FP16, INT8, VARIANTS
from visiondock.web import require_role

from .dependencies import DEPLOYS, Catalog, Model
from .schemas import LabelIssueList, ModelSummary, ModelVersion, VersionRegistration

# A version's files (`variant_filename` of None and of each of VARIANTS), spelled out so that type checkers
# read them too.
ArtifactName = Literal["model.onnx", "model.int8.onnx", "model.fp16.onnx"]
if get_args(ArtifactName) != (MODEL_FILE, *(variant_filename(v) for v in VARIANTS)):
    raise RuntimeError(f"ArtifactName {get_args(ArtifactName)} differs from the files of the variants {VARIANTS}")

# The trainer registers versions; scoring services (predict keys) read models and download their
# files; deleting a version is an admin's.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", readers=("predict",)))])
# A version's project decides where the scoring service captures its predictions: covered like its model.
_REGISTERS = [Depends(require_role("train", scope=ResourceScope(path=True, body=("metadata.project_id",))))]
# An ONNX file and its variants (INT8 a quarter, fp16 half its size); EfficientNet-Lite2 is ~25 MB, detectors a
# little more.
MAX_VERSION_UPLOAD_BYTES = 1024 * 1024 * 1024


@router.get("/models", response_model=Page[ModelSummary], tags=["models"],
            dependencies=[Depends(require_role("train", readers=("predict",), scope=EVERYTHING))])
def list_models(catalog: Catalog, limit: PageSize = 100, continuation: str | None = None) -> dict:
    items, token = catalog.list_models(limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/models/{model}", response_model=ModelSummary, tags=["models"])
def get_model(model: Model, catalog: Catalog) -> dict:
    return catalog.get_model(model)


@router.post("/models/{model}/versions", status_code=201, response_model=ModelVersion, tags=["versions"],
             summary="Register a new version: the ONNX file, optional variants and its metadata",
             dependencies=[*_REGISTERS, Depends(body_limit(MAX_VERSION_UPLOAD_BYTES))],
             form_limits={"max_files": 1 + len(VARIANTS), "max_fields": 2})
def register_version(
    model: Model,
    catalog: Catalog,
    file: Annotated[UploadFile, File(alias="model", description="The ONNX model file (fp32).")],
    metadata: Annotated[Json[VersionRegistration], Form(description="JSON: task, labels, metrics, splits, params, "
                                                                    "run_id, variant_metrics.")],
    int8: Annotated[UploadFile | None, File(description="Optional static INT8 variant (for CPUs).")] = None,
    fp16: Annotated[UploadFile | None, File(description="Optional float16 variant (for GPUs).")] = None,
) -> dict:
    fields = metadata.model_dump()
    variant_metrics = fields.pop("variant_metrics")
    issues = fields.pop("label_issues")
    variants = {name: upload.file for name, upload in ((INT8, int8), (FP16, fp16)) if upload is not None}
    if set(variant_metrics) - set(variants):
        raise InvalidContent("variant_metrics names a variant whose file was not sent")
    return catalog.register(model, file.file, fields, variants=variants, variant_metrics=variant_metrics,
                            label_issues=[{k: v for k, v in item.items() if v is not None} for item in issues]
                            if issues is not None else None)


@router.get("/models/{model}/versions", response_model=Page[ModelVersion], tags=["versions"],
            summary="Versions, newest first; or the best by a metric: `?order_by=metrics.accuracy&desc=true&limit=1`")
def list_versions(model: Model, catalog: Catalog, limit: PageSize = 100, continuation: str | None = None,
                  order_by: Annotated[str, Query(description="version, created_at, task, metrics.<name>, "
                                                             "params.<name>, ...")] = "version",
                  desc: bool = True,
                  where: Annotated[list[str], Query(description="Conditions such as `metrics.accuracy>=0.9` or "
                                                                "`task=multiclass`, all of which must hold.")] = [],  # noqa: B006 - FastAPI copies it
                  ) -> dict:
    items, token = catalog.list_versions(model, limit=limit, continuation=continuation, order_by=order_by,
                                          descending=desc, where=where)
    return {"data": items, "continuation": token}


@router.delete("/models/{model}/versions/{version}", status_code=204, tags=["versions"],
               summary="Delete a version and its files (409 while an alias points at it)", dependencies=DEPLOYS)
def delete_version(model: Model, version: int, catalog: Catalog) -> None:
    catalog.delete_version(model, version)


@router.get("/models/{model}/versions/{version}", response_model=ModelVersion, tags=["versions"])
def get_version(model: Model, version: int, catalog: Catalog) -> dict:
    return catalog.get_version(model, version)


@router.get("/models/{model}/versions/{version}/label-issues", response_model=LabelIssueList, tags=["versions"],
            response_model_exclude_none=True,
            summary="Likely label errors the version's training found: labeled images whose given label the "
                    "models that never saw them found unlikely, most likely first (404 for versions without a list)")
def get_label_issues(model: Model, version: int, catalog: Catalog,
                     limit: Annotated[int | None, Query(ge=1, le=1000, description="At most this many.")] = None,
                     ) -> dict:
    return catalog.label_issues(model, version, limit=limit)


@router.get("/models/{model}/versions/{version}/artifacts/{filename}", tags=["versions"],
            response_class=StreamingResponse,
            summary="A file of the version: `model.onnx` (fp32) or a variant such as `model.int8.onnx`")
def get_artifact(model: Model, version: int, filename: ArtifactName, catalog: Catalog) -> StreamingResponse:
    chunks, info = catalog.artifact(model, version, filename)
    headers = {"Content-Length": str(info["size"]), "ETag": f'"{info["sha256"]}"',
               "X-Content-SHA256": info["sha256"]}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
