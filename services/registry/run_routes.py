"""HTTP routes of training runs: creating (and launching) one, reading and updating it as the trainer
reports, reserving its version, stopping it, and writing and reading its log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from visiondock.auth import ResourceScope, by_body
from visiondock.errors import Forbidden
from visiondock.schemas import Page, PageSize
from visiondock.web import Caller, require_role

from .dependencies import BY_RUN, Catalog, Launches, RunPath, run_for
from .run_logs import RunLogs
from .schemas import (
    ModelName,
    ReservedVersion,
    RunCancel,
    RunCreate,
    RunLog,
    RunLogAppend,
    RunStatus,
    RunUpdate,
    TrainingRun,
)

# Runs are the trainer's: train keys create, cancel and report them and write and read their logs; scoring
# services (predict keys) may read them. Each route says what its key's scope must cover.
# Log line numbers stay far below this; larger numbers would overflow the stores' integers.
MAX_LINE = 2**53
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", scope=BY_RUN))], tags=["runs"])
# The trainer reads the run's project: a key creating a run must cover its model and its project.
_CREATES_RUN = [Depends(require_role("train", scope=by_body("model", "project_id")))]
_READS_RUNS = [Depends(require_role("train", readers=("predict",), scope=ResourceScope(query=("model",),
                                                                                         unnamed="everything")))]
_ONE_RUN = [Depends(require_role("train", readers=("predict",), scope=BY_RUN))]


@router.post("/runs", status_code=201, response_model=TrainingRun,
             summary="Create a training run (queued); the trainer reports its progress on it. With `launch`, "
                     "also start the trainer: a Kubernetes Job, or a process beside the registry (`on: local`)",
             dependencies=_CREATES_RUN)
def create_run(body: RunCreate, launches: Launches, caller: Caller) -> dict:
    if caller.run_id is not None:
        raise Forbidden(f"the key {caller.name!r} belongs to a training run; it cannot start others")
    return launches.create(body)


@router.get("/runs", response_model=Page[TrainingRun], summary="Training runs, newest first",
            dependencies=_READS_RUNS)
def list_runs(catalog: Catalog, model: ModelName | None = None, status: RunStatus | None = None,
              limit: PageSize = 100, continuation: str | None = None) -> dict:
    items, token = catalog.runs.list(model=model, status=status, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.get("/runs/{run_id}", response_model=TrainingRun,
            summary="A run; for a launched run, its Kubernetes Job is read too (a failed Job fails the run)",
            dependencies=_ONE_RUN)
def get_run(run_id: RunPath, catalog: Catalog, launches: Launches) -> dict:
    return launches.follow(run_for(catalog, run_id))


# The pod log can hold paths and settings: train keys only, not the scoring services' predict keys.
@router.get("/runs/{run_id}/job-logs", response_class=PlainTextResponse,
            summary="The last lines of the pod log of a run started as a Kubernetes Job (also what a trainer "
                    "printed before it could report, e.g. when it was killed)",
            dependencies=[Depends(require_role("train", scope=BY_RUN))])
def get_job_logs(run_id: RunPath, catalog: Catalog, launches: Launches,
                 tail: Annotated[int, Query(ge=1, le=10000)] = 200) -> str:
    return launches.logs(run_for(catalog, run_id), tail_lines=tail)


@router.patch("/runs/{run_id}", response_model=TrainingRun,
              summary="Report progress: running with stage, epoch and metrics, or failed with the error",
              dependencies=_ONE_RUN)
def update_run(run_id: RunPath, body: RunUpdate, catalog: Catalog) -> dict:
    return catalog.runs.update(run_id, body.model_dump(exclude_none=True))


@router.post("/runs/{run_id}/reserve-version", response_model=ReservedVersion,
             summary="The version number the run will register under (the same on every call)",
             dependencies=_ONE_RUN)
def reserve_version(run_id: RunPath, catalog: Catalog) -> dict:
    return catalog.runs.reserve_version(run_id)


@router.post("/runs/{run_id}/cancel", response_model=TrainingRun,
             summary="Cancel a queued or running run: it registers nothing and the trainer stops")
def cancel_run(run_id: RunPath, catalog: Catalog, body: RunCancel | None = None) -> dict:
    run_for(catalog, run_id)
    return catalog.runs.cancel(run_id, body.reason if body else "")


@router.post("/runs/{run_id}/logs", response_model=RunLog, summary="Append lines to the run's log")
def append_run_log(run_id: RunPath, body: RunLogAppend, catalog: Catalog) -> dict:
    run_for(catalog, run_id)
    last = RunLogs(catalog.documents).append(run_id, body.lines)
    return {"lines": [], "next": last, "total": last}


@router.get("/runs/{run_id}/logs", response_model=RunLog,
            summary="The run's log: the lines after `after` (to follow it), or the last `tail` lines")
def read_run_log(run_id: RunPath, catalog: Catalog,
                 after: Annotated[int, Query(ge=0, le=MAX_LINE)] = 0,
                 tail: Annotated[int | None, Query(ge=0, le=10000)] = None,
                 limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict:
    run_for(catalog, run_id)
    return RunLogs(catalog.documents).read(run_id, after=after, tail=tail, limit=limit)
