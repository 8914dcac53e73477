"""HTTP routes to stop a training run and to write and read its log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from visiondock.web import Caller, require_role

from .dependencies import Catalog, RunPath, run_for
from .launches import RunLaunches
from .run_logs import RunLogs
from .schemas import RunCancel, RunLog, RunLogAppend, TrainingRun

# Runs are the trainer's: train keys cancel them and write and read their logs.
# Log line numbers stay far below this; larger numbers would overflow the stores' integers.
MAX_LINE = 2**53
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train"))], tags=["runs"])


@router.post("/runs/{run_id}/cancel", response_model=TrainingRun,
             summary="Cancel a queued or running run: it registers nothing, the trainer stops at its next epoch, "
                     "and a trainer the registry started is stopped (a local process after a grace period, a "
                     "Kubernetes Job deleted at once)")
def cancel_run(run_id: RunPath, catalog: Catalog, caller: Caller, request: Request,
               body: RunCancel | None = None) -> dict:
    run_for(catalog, run_id, caller)
    launches: RunLaunches = request.app.state.launches
    return launches.cancel(run_id, body.reason if body else "")


@router.post("/runs/{run_id}/logs", response_model=RunLog, summary="Append lines to the run's log")
def append_run_log(run_id: RunPath, body: RunLogAppend, catalog: Catalog, caller: Caller) -> dict:
    run_for(catalog, run_id, caller)
    last = RunLogs(catalog.documents).append(run_id, body.lines)
    return {"lines": [], "next": last, "total": last}


@router.get("/runs/{run_id}/logs", response_model=RunLog,
            summary="The run's log: the lines after `after` (to follow it), or the last `tail` lines")
def read_run_log(run_id: RunPath, catalog: Catalog, caller: Caller,
                 after: Annotated[int, Query(ge=0, le=MAX_LINE)] = 0,
                 tail: Annotated[int | None, Query(ge=0, le=10000)] = None,
                 limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict:
    run_for(catalog, run_id, caller)
    return RunLogs(catalog.documents).read(run_id, after=after, tail=tail, limit=limit)
