"""HTTP routes of the registry service: thin wrappers over ModelRegistry."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from visiondock.errors import BadRequest
from visiondock.web import require_api_key

from .catalog import ModelRegistry
from .schemas import (
    Alias,
    AliasList,
    AliasName,
    AliasUpdate,
    ModelName,
    ModelPage,
    ModelSummary,
    ModelVersion,
    ResolvedAlias,
    VersionMetadata,
    VersionPage,
)


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


Registry = Annotated[ModelRegistry, Depends(_registry)]
Model = Annotated[ModelName, Path(description="The model's name, e.g. the project it was trained from.")]
AliasPath = Annotated[AliasName, Path(description="An alias such as `production` or `staging`.")]
PageSize = Annotated[int, Query(ge=1, le=1000)]

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@router.get("/models", response_model=ModelPage, tags=["models"])
def list_models(registry: Registry, limit: PageSize = 100, continuation: str | None = None) -> dict:
    items, token = registry.list_models(limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/models/{model}", response_model=ModelSummary, tags=["models"])
def get_model(model: Model, registry: Registry) -> dict:
    return registry.get_model(model)


@router.post("/models/{model}/versions", status_code=201, response_model=ModelVersion, tags=["versions"],
             summary="Register a new version: the ONNX file and its metadata")
def register_version(
    model: Model,
    registry: Registry,
    file: Annotated[UploadFile, File(alias="model", description="The ONNX model file.")],
    metadata: Annotated[str, Form(description="JSON: task, labels, metrics, splits, params.")],
) -> dict:
    try:
        parsed = VersionMetadata.model_validate(json.loads(metadata))
    except json.JSONDecodeError as exc:
        raise BadRequest(f"metadata is not valid JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"metadata is invalid: {problems}", status=422) from None
    return registry.register(model, file.file, parsed.model_dump())


@router.get("/models/{model}/versions", response_model=VersionPage, tags=["versions"],
            summary="Versions, newest first")
def list_versions(model: Model, registry: Registry, limit: PageSize = 100,
                  continuation: str | None = None) -> dict:
    items, token = registry.list_versions(model, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/models/{model}/versions/{version}", response_model=ModelVersion, tags=["versions"])
def get_version(model: Model, version: int, registry: Registry) -> dict:
    return registry.get_version(model, version)


@router.get("/models/{model}/versions/{version}/artifacts/model.onnx", tags=["versions"],
            response_class=StreamingResponse, summary="The version's ONNX file")
def get_artifact(model: Model, version: int, registry: Registry) -> StreamingResponse:
    chunks, info = registry.artifact(model, version)
    headers = {"Content-Length": str(info["size"]), "ETag": f'"{info["sha256"]}"',
               "X-Content-SHA256": info["sha256"]}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/models/{model}/aliases", response_model=AliasList, tags=["aliases"])
def list_aliases(model: Model, registry: Registry) -> dict:
    return {"data": registry.list_aliases(model)}


@router.put("/models/{model}/aliases/{alias}", response_model=Alias, tags=["aliases"],
            summary="Point an alias at a version (deploys it to whatever serves the alias)")
def set_alias(model: Model, alias: AliasPath, body: AliasUpdate, registry: Registry) -> dict:
    return registry.set_alias(model, alias, body.version)


@router.get("/models/{model}/aliases/{alias}", response_model=ResolvedAlias, tags=["aliases"],
            summary="The version an alias points at, with its metadata and artifact")
def resolve_alias(model: Model, alias: AliasPath, registry: Registry) -> dict:
    return registry.resolve_alias(model, alias)


@router.delete("/models/{model}/aliases/{alias}", status_code=204, tags=["aliases"])
def delete_alias(model: Model, alias: AliasPath, registry: Registry) -> None:
    registry.delete_alias(model, alias)
