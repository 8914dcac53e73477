"""Request and response bodies of the registry API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]


class Splits(BaseModel):
    """The ids (SHA-256) of the images each part of the data set held."""

    train: list[str] = Field(default_factory=list)
    validation: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)


class VersionMetadata(BaseModel):
    """What the trainer sends with a new version's ONNX file."""

    task: str = Field(description="multiclass, multilabel, detection or face")
    labels: list[str] = Field(min_length=1)
    project_id: str | None = None
    description: str = Field(default="", max_length=2000)
    metrics: dict[str, Any] = Field(default_factory=dict, description="Held-out metrics, as the trainer "
                                                                        "computed them.")
    splits: Splits = Field(default_factory=Splits)
    params: dict[str, Any] = Field(default_factory=dict, description="Training parameters.")
    run_id: str | None = Field(default=None, description="The training run that made this version.")


class Artifact(BaseModel):
    key: str
    sha256: str
    size: int


class ModelVersion(VersionMetadata):
    model: str
    version: int
    created_at: datetime
    artifact: Artifact


class ModelSummary(BaseModel):
    name: str
    latest_version: int
    created_at: datetime
    updated_at: datetime
    aliases: dict[str, int] = Field(default_factory=dict)


class AliasUpdate(BaseModel):
    version: int = Field(ge=1)


class Alias(BaseModel):
    model: str
    alias: str
    version: int
    updated_at: datetime


class ResolvedAlias(Alias):
    model_version: ModelVersion
    artifact_url: str = Field(description="Path of the ONNX file on this service.")


class ModelPage(BaseModel):
    data: list[ModelSummary]
    continuation: str | None = None


class VersionPage(BaseModel):
    data: list[ModelVersion]
    continuation: str | None = None


class AliasList(BaseModel):
    data: list[Alias]
