"""What the registry's route modules share: the catalog and the path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from visiondock.web import Caller

from .catalog import ModelCatalog
from .schemas import AliasName, ModelName, RunId


async def _catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


Catalog = Annotated[ModelCatalog, Depends(_catalog)]
Model = Annotated[ModelName, Path(description="The model's name, e.g. the project it was trained from.")]
AliasPath = Annotated[AliasName, Path(description="An alias such as `production` or `staging`.")]
RunPath = Annotated[RunId, Path(description="The run's id, `run-` and 16 hex digits.")]


def run_for(catalog: ModelCatalog, run_id: str, caller: Caller) -> dict[str, Any]:
    """The run, when the caller's key covers its model and project (runs are addressed by id); a run's
    own key reaches only that run."""
    run = catalog.runs.get(run_id)
    caller.require_run(run_id)
    caller.require_resource(run["model"])
    if run.get("project_id"):
        caller.require_resource(run["project_id"])
    return run
