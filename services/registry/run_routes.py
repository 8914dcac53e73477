"""HTTP routes to stop a training run and to write and read its log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from visiondock.web import require_role

from .dependencies import BY_RUN, Catalog, RunPath, run_for
from .run_logs import RunLogs
from .schemas import RunCancel, RunLog, RunLogAppend, TrainingRun

# Runs are the trainer's: train keys cancel them and write and read their logs.
# Log line numbers stay far below this; larger numbers would overflow the stores' integers.
MAX_LINE = 2**53
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", scope=BY_RUN))], tags=["runs"])


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
