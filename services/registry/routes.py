"""HTTP routes of the registry service: thin wrappers over ModelCatalog and its TrainingRuns."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import Json

from visiondock.auth import EVERYTHING, ResourceScope, by_body
from visiondock.blob_keys import MODEL_FILE, variant_filename
from visiondock.errors import Forbidden, InvalidContent
from visiondock.limits import body_limit
from visiondock.schemas import Page, PageSize
from visiondock.vocabulary import FP16, INT8, VARIANTS
from visiondock.web import Caller, require_role

from .alias_routes import IfMatch, request_actor
from .aliases import quoted as _quoted
from .dependencies import BY_RUN, AliasPath, Catalog, Model, RunPath, run_for
from .launches import RunLaunches
from .schemas import (
    Alias,
    AliasList,
    AliasUpdate,
    ModelName,
    ModelSummary,
    ModelVersion,
    ReservedVersion,
    ResolvedAlias,
    RunCreate,
    RunStatus,
    RunUpdate,
    TrainingRun,
    VersionRegistration,
)


async def _launches(request: Request) -> RunLaunches:
    return request.app.state.launches


Launches = Annotated[RunLaunches, Depends(_launches)]
ArtifactName = Literal[MODEL_FILE, *(variant_filename(v) for v in VARIANTS)]  # type: ignore[valid-type]

# The trainer registers versions and reports runs; scoring services (predict keys) read models
# and download their files; moving an alias deploys, which only admin keys may.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", readers=("predict",)))])
_DEPLOYS = [Depends(require_role("admin"))]
# A version's project decides where the scoring service captures its predictions: covered like its model.
_REGISTERS = [Depends(require_role("train", scope=ResourceScope(path=True, body=("metadata.project_id",))))]
# The trainer reads the run's project: a key creating a run must cover its model and its project.
_CREATES_RUN = [Depends(require_role("train", scope=by_body("model", "project_id")))]
_READS_RUNS = [Depends(require_role("train", readers=("predict",), scope=ResourceScope(query=("model",),
                                                                                         unnamed="everything")))]
_ONE_RUN = [Depends(require_role("train", readers=("predict",), scope=BY_RUN))]
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
    variants = {name: upload.file for name, upload in ((INT8, int8), (FP16, fp16)) if upload is not None}
    if set(variant_metrics) - set(variants):
        raise InvalidContent("variant_metrics names a variant whose file was not sent")
    return catalog.register(model, file.file, fields, variants=variants, variant_metrics=variant_metrics)


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
               summary="Delete a version and its files (409 while an alias points at it)", dependencies=_DEPLOYS)
def delete_version(model: Model, version: int, catalog: Catalog) -> None:
    catalog.delete_version(model, version)


@router.get("/models/{model}/versions/{version}", response_model=ModelVersion, tags=["versions"])
def get_version(model: Model, version: int, catalog: Catalog) -> dict:
    return catalog.get_version(model, version)


@router.get("/models/{model}/versions/{version}/artifacts/{filename}", tags=["versions"],
            response_class=StreamingResponse,
            summary="A file of the version: `model.onnx` (fp32) or a variant such as `model.int8.onnx`")
def get_artifact(model: Model, version: int, filename: ArtifactName, catalog: Catalog) -> StreamingResponse:
    chunks, info = catalog.artifact(model, version, filename)
    headers = {"Content-Length": str(info["size"]), "ETag": f'"{info["sha256"]}"',
               "X-Content-SHA256": info["sha256"]}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/models/{model}/aliases", response_model=AliasList, tags=["aliases"])
def list_aliases(model: Model, catalog: Catalog) -> dict:
    return {"data": catalog.list_aliases(model)}


@router.put("/models/{model}/aliases/{alias}", response_model=Alias, tags=["aliases"],
            summary="Point an alias at a version (deploys it to whatever serves the alias); recorded in its "
                    "history. With If-Match (the alias's ETag) a move refuses to overwrite a newer one: 412.",
            dependencies=_DEPLOYS)
def set_alias(model: Model, alias: AliasPath, body: AliasUpdate, catalog: Catalog, request: Request,
              response: Response, if_match: IfMatch = None) -> dict:
    moved = catalog.set_alias(model, alias, body.version, actor=request_actor(request), reason=body.reason,
                               if_match=if_match)
    response.headers["ETag"] = _quoted(moved["etag"])
    return moved


@router.get("/models/{model}/aliases/{alias}", response_model=ResolvedAlias, tags=["aliases"],
            summary="The version an alias points at, with its metadata and artifact",
            responses={304: {"description": "The alias has not changed since the ETag sent in If-None-Match."}})
def resolve_alias(model: Model, alias: AliasPath, catalog: Catalog, request: Request,
                  response: Response) -> dict | Response:
    # Watchers poll this: an unchanged alias costs one small read and an empty 304.
    seen = request.headers.get("if-none-match")
    if seen and seen == _quoted(catalog.get_alias(model, alias)["etag"]):
        return Response(status_code=304, headers={"ETag": seen})
    resolved = catalog.resolve_alias(model, alias)
    response.headers["ETag"] = _quoted(resolved["etag"])
    return resolved


@router.delete("/models/{model}/aliases/{alias}", status_code=204, tags=["aliases"], dependencies=_DEPLOYS)
def delete_alias(model: Model, alias: AliasPath, catalog: Catalog, request: Request,
                 if_match: IfMatch = None, reason: Annotated[str, Query(max_length=500)] = "") -> None:
    catalog.delete_alias(model, alias, actor=request_actor(request), reason=reason, if_match=if_match)


# -- training runs --------------------------------------------------------------------
@router.post("/runs", status_code=201, response_model=TrainingRun, tags=["runs"],
             summary="Create a training run (queued); the trainer reports its progress on it. With `launch`, "
                     "also start the trainer: a Kubernetes Job, or a process beside the registry (`on: local`)",
             dependencies=_CREATES_RUN)
def create_run(body: RunCreate, launches: Launches, caller: Caller) -> dict:
    if caller.run_id is not None:
        raise Forbidden(f"the key {caller.name!r} belongs to a training run; it cannot start others")
    return launches.create(body)


@router.get("/runs", response_model=Page[TrainingRun], tags=["runs"], summary="Training runs, newest first",
            dependencies=_READS_RUNS)
def list_runs(catalog: Catalog, model: ModelName | None = None, status: RunStatus | None = None,
              limit: PageSize = 100, continuation: str | None = None) -> dict:
    items, token = catalog.runs.list(model=model, status=status, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/runs/{run_id}", response_model=TrainingRun, tags=["runs"],
            summary="A run; for a launched run, its Kubernetes Job is read too (a failed Job fails the run)",
            dependencies=_ONE_RUN)
def get_run(run_id: RunPath, catalog: Catalog, launches: Launches) -> dict:
    return launches.follow(run_for(catalog, run_id))


# The pod log can hold paths and settings: train keys only, not the scoring services' predict keys.
@router.get("/runs/{run_id}/job-logs", response_class=PlainTextResponse, tags=["runs"],
            summary="The last lines of the pod log of a run started as a Kubernetes Job (also what a trainer "
                    "printed before it could report, e.g. when it was killed)",
            dependencies=[Depends(require_role("train", scope=BY_RUN))])
def get_job_logs(run_id: RunPath, catalog: Catalog, launches: Launches,
                 tail: Annotated[int, Query(ge=1, le=10000)] = 200) -> str:
    return launches.logs(run_for(catalog, run_id), tail_lines=tail)


@router.patch("/runs/{run_id}", response_model=TrainingRun, tags=["runs"],
              summary="Report progress: running with stage, epoch and metrics, or failed with the error",
              dependencies=_ONE_RUN)
def update_run(run_id: RunPath, body: RunUpdate, catalog: Catalog) -> dict:
    return catalog.runs.update(run_id, body.model_dump(exclude_none=True))


@router.post("/runs/{run_id}/reserve-version", response_model=ReservedVersion, tags=["runs"],
             summary="The version number the run will register under (the same on every call)",
             dependencies=_ONE_RUN)
def reserve_version(run_id: RunPath, catalog: Catalog) -> dict:
    return catalog.runs.reserve_version(run_id)
