"""What the registry's newer route modules share: the registry itself and the path parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from .catalog import ModelRegistry
from .schemas import AliasName, ModelName, RunId


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


Registry = Annotated[ModelRegistry, Depends(_registry)]
Model = Annotated[ModelName, Path(description="The model's name, e.g. the project it was trained from.")]
AliasPath = Annotated[AliasName, Path(description="An alias such as `production` or `staging`.")]
RunPath = Annotated[RunId, Path(description="The run's id, `run-` and 16 hex digits.")]
