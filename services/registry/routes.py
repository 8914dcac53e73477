"""HTTP routes of the registry service: thin wrappers over ModelRegistry and its TrainingRuns."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from visiondock.errors import BadRequest
from visiondock.limits import body_limit, loads_bounded
from visiondock.web import Caller, require_role

from .catalog import MODEL_FILE, VARIANTS, ModelRegistry, variant_filename
from .schemas import (
    Alias,
    AliasList,
    AliasName,
    AliasUpdate,
    ModelName,
    ModelPage,
    ModelSummary,
    ModelVersion,
    ReservedVersion,
    ResolvedAlias,
    RunCreate,
    RunId,
    RunPage,
    RunStatus,
    RunUpdate,
    TrainingRun,
    VersionPage,
    VersionRegistration,
)


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


Registry = Annotated[ModelRegistry, Depends(_registry)]
Model = Annotated[ModelName, Path(description="The model's name, e.g. the project it was trained from.")]
AliasPath = Annotated[AliasName, Path(description="An alias such as `production` or `staging`.")]
PageSize = Annotated[int, Query(ge=1, le=1000)]
RunPath = Annotated[RunId, Path(description="The run's id, `run-` and 16 hex digits.")]
ArtifactName = Literal[MODEL_FILE, *(variant_filename(v) for v in VARIANTS)]  # type: ignore[valid-type]

# The trainer registers versions and reports runs; scoring services (predict keys) read models
# and download their files; moving an alias deploys, which only admin keys may.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", readers=("predict",)))])
_DEPLOYS = [Depends(require_role("admin"))]
# An ONNX file and its INT8 variant; EfficientNet-Lite2 is ~25 MB, detectors a little more.
MAX_VERSION_UPLOAD_BYTES = 1024 * 1024 * 1024


@router.get("/models", response_model=ModelPage, tags=["models"])
def list_models(registry: Registry, caller: Caller, limit: PageSize = 100, continuation: str | None = None) -> dict:
    caller.require_unscoped("listing every model")
    items, token = registry.list_models(limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/models/{model}", response_model=ModelSummary, tags=["models"])
def get_model(model: Model, registry: Registry) -> dict:
    return registry.get_model(model)


@router.post("/models/{model}/versions", status_code=201, response_model=ModelVersion, tags=["versions"],
             summary="Register a new version: the ONNX file, optional variants and its metadata",
             dependencies=[Depends(body_limit(MAX_VERSION_UPLOAD_BYTES))],
             form_limits={"max_files": 2, "max_fields": 2})
def register_version(
    model: Model,
    registry: Registry,
    file: Annotated[UploadFile, File(alias="model", description="The ONNX model file (fp32).")],
    metadata: Annotated[str, Form(description="JSON: task, labels, metrics, splits, params, run_id, "
                                              "variant_metrics.")],
    int8: Annotated[UploadFile | None, File(description="Optional statically quantized INT8 variant.")] = None,
) -> dict:
    try:
        parsed = VersionRegistration.model_validate(loads_bounded(metadata, "metadata"))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"metadata is invalid: {problems}", status=422) from None
    fields = parsed.model_dump()
    variant_metrics = fields.pop("variant_metrics")
    variants = {"int8": int8.file} if int8 is not None else {}
    if set(variant_metrics) - set(variants):
        raise BadRequest("variant_metrics names a variant whose file was not sent", status=422)
    return registry.register(model, file.file, fields, variants=variants, variant_metrics=variant_metrics)


@router.get("/models/{model}/versions", response_model=VersionPage, tags=["versions"],
            summary="Versions, newest first")
def list_versions(model: Model, registry: Registry, limit: PageSize = 100,
                  continuation: str | None = None) -> dict:
    items, token = registry.list_versions(model, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/models/{model}/versions/{version}", response_model=ModelVersion, tags=["versions"])
def get_version(model: Model, version: int, registry: Registry) -> dict:
    return registry.get_version(model, version)


@router.get("/models/{model}/versions/{version}/artifacts/{filename}", tags=["versions"],
            response_class=StreamingResponse,
            summary="A file of the version: `model.onnx` (fp32) or a variant such as `model.int8.onnx`")
def get_artifact(model: Model, version: int, filename: ArtifactName, registry: Registry) -> StreamingResponse:
    chunks, info = registry.artifact(model, version, filename)
    headers = {"Content-Length": str(info["size"]), "ETag": f'"{info["sha256"]}"',
               "X-Content-SHA256": info["sha256"]}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/models/{model}/aliases", response_model=AliasList, tags=["aliases"])
def list_aliases(model: Model, registry: Registry) -> dict:
    return {"data": registry.list_aliases(model)}


@router.put("/models/{model}/aliases/{alias}", response_model=Alias, tags=["aliases"],
            summary="Point an alias at a version (deploys it to whatever serves the alias)", dependencies=_DEPLOYS)
def set_alias(model: Model, alias: AliasPath, body: AliasUpdate, registry: Registry) -> dict:
    return registry.set_alias(model, alias, body.version)


@router.get("/models/{model}/aliases/{alias}", response_model=ResolvedAlias, tags=["aliases"],
            summary="The version an alias points at, with its metadata and artifact",
            responses={304: {"description": "The alias has not changed since the ETag sent in If-None-Match."}})
def resolve_alias(model: Model, alias: AliasPath, registry: Registry, request: Request,
                  response: Response) -> dict | Response:
    # Watchers poll this: an unchanged alias costs one small read and an empty 304.
    seen = request.headers.get("if-none-match")
    if seen and seen == _quoted(registry.get_alias(model, alias)["etag"]):
        return Response(status_code=304, headers={"ETag": seen})
    resolved = registry.resolve_alias(model, alias)
    response.headers["ETag"] = _quoted(resolved["etag"])
    return resolved


def _quoted(etag: str) -> str:
    """An HTTP entity tag: the stores' etags come quoted already (as Cosmos DB's do) or bare."""
    return etag if etag.startswith('"') else f'"{etag}"'


@router.delete("/models/{model}/aliases/{alias}", status_code=204, tags=["aliases"], dependencies=_DEPLOYS)
def delete_alias(model: Model, alias: AliasPath, registry: Registry) -> None:
    registry.delete_alias(model, alias)


# -- training runs --------------------------------------------------------------------
@router.post("/runs", status_code=201, response_model=TrainingRun, tags=["runs"],
             summary="Create a training run (queued); the trainer reports its progress on it")
def create_run(body: RunCreate, registry: Registry, caller: Caller) -> dict:
    caller.require_resource(body.model)
    return registry.runs.create(body.model, project_id=body.project_id, params=body.params)


@router.get("/runs", response_model=RunPage, tags=["runs"], summary="Training runs, newest first")
def list_runs(registry: Registry, caller: Caller, model: ModelName | None = None, status: RunStatus | None = None,
              limit: PageSize = 100, continuation: str | None = None) -> dict:
    if model is None:
        caller.require_unscoped("listing the runs of every model")
    else:
        caller.require_resource(model)
    items, token = registry.runs.list(model=model, status=status, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/runs/{run_id}", response_model=TrainingRun, tags=["runs"])
def get_run(run_id: RunPath, registry: Registry, caller: Caller) -> dict:
    return _run_of(registry, run_id, caller)


def _run_of(registry: ModelRegistry, run_id: str, caller: Caller) -> dict:
    """The run, when the caller's key covers its model (runs are addressed by id, not model)."""
    run = registry.runs.get(run_id)
    caller.require_resource(run["model"])
    return run


@router.patch("/runs/{run_id}", response_model=TrainingRun, tags=["runs"],
              summary="Report progress: running with stage, epoch and metrics, or failed with the error")
def update_run(run_id: RunPath, body: RunUpdate, registry: Registry, caller: Caller) -> dict:
    _run_of(registry, run_id, caller)
    return registry.runs.update(run_id, body.model_dump(exclude_none=True))


@router.post("/runs/{run_id}/reserve-version", response_model=ReservedVersion, tags=["runs"],
             summary="The version number the run will register under (the same on every call)")
def reserve_version(run_id: RunPath, registry: Registry, caller: Caller) -> dict:
    _run_of(registry, run_id, caller)
    return registry.runs.reserve_version(run_id)
