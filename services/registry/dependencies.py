"""What the registry's route modules share: the catalog and the run launches, the path parameters, and
the permissions more than one module declares."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from visiondock.auth import Principal, by_lookup
from visiondock.web import require_role

from .catalog import ModelCatalog
from .launched_runs import RunLaunches
from .schemas import RUN_ID_PATTERN, AliasName, ModelName, RunId


async def _catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


async def _launches(request: Request) -> RunLaunches:
    return request.app.state.launches


Catalog = Annotated[ModelCatalog, Depends(_catalog)]
Launches = Annotated[RunLaunches, Depends(_launches)]
Model = Annotated[ModelName, Path(description="The model's name, e.g. the project it was trained from.")]
AliasPath = Annotated[AliasName, Path(description="An alias such as `production` or `staging`.")]
RunPath = Annotated[RunId, Path(description="The run's id, `run-` and 16 hex digits.")]


async def _run_touches(request: Request, principal: Principal) -> list[str]:
    """A run's model and project (runs are addressed by id); a run's own key reaches only that run."""
    run_id = request.path_params.get("run_id", "")
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        return []  # FastAPI answers the malformed id with 422 before the route runs
    run = await run_in_threadpool(request.app.state.catalog.runs.get, run_id)
    principal.require_run(run_id)
    return [run["model"], *([run["project_id"]] if run.get("project_id") else [])]


# The scope of the routes of one run: the key must cover the run's model and project.
BY_RUN = by_lookup(_run_touches, "the run's model and project")
# Moving an alias deploys a version, and deleting one undeploys it: admin keys only.
DEPLOYS = [Depends(require_role("admin"))]


def run_for(catalog: ModelCatalog, run_id: str) -> dict[str, Any]:
    """The run (its permission, BY_RUN, has checked the caller's key against it)."""
    return catalog.runs.get(run_id)
