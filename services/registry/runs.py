"""Training runs: what a training Job is doing, readable by id while it runs and after.

A run is created `queued` (by whoever launches the Job, or by the trainer itself),
becomes `running` with the stage, epoch and latest metrics as the trainer reports
them, and ends `failed` (with the error), `cancelled` or `succeeded`. Only registering a version
with the run's id makes it `succeeded`, so a run that says so always has its
version, and a failed run never has one.

Before exporting, the trainer reserves the version number it will register under,
so the ONNX file can carry its own version (`ModelCard.model_version`). The number
comes from the model's counter like any other; a run that fails after reserving
leaves a gap in the version numbers, never a half-registered version.

Storage: collection `training_runs`, each run its own partition (its id), so reading
one run is a point read; listing by model queries across partitions.

Every progress report is also a heartbeat (`heartbeat_at`; the trainer sends an empty
one every 30 s). A `running` run silent for longer than `lost_after` seconds becomes
`lost` when it is next read: a trainer killed with SIGKILL cannot mark its run failed,
and nobody should wait for it. A lost run is finished like a failed one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from visiondock.errors import Conflict, InvalidContent, NotFound
from visiondock.storage import DocumentNotFoundError, DocumentStore, Filter, PreconditionFailedError, Query
from visiondock.timeutil import utc_now

RUNS = "training_runs"
# `lost`: a running run whose trainer stopped sending heartbeats (killed, evicted, partitioned).
FINISHED = frozenset({"succeeded", "failed", "cancelled", "lost"})
DEFAULT_LOST_AFTER_S = 300.0
# A Kubernetes Job's phases that do not change again (services.registry.kubernetes_jobs.JobState).
JOB_FINAL = frozenset({"succeeded", "failed"})
_UPDATABLE = ("stage", "epoch", "epochs", "metrics", "error", "report")


def new_run_id() -> str:
    return f"run-{secrets.token_hex(8)}"


class TrainingRuns:
    def __init__(self, documents: DocumentStore, take_version_number: Callable[[str], int], *,
                 lost_after: float = DEFAULT_LOST_AFTER_S) -> None:
        self.documents = documents
        self._take_version_number = take_version_number
        self.lost_after = timedelta(seconds=lost_after)

    def create(self, model: str, *, project_id: str | None = None,
               params: dict[str, Any] | None = None) -> dict[str, Any]:
        now = utc_now()
        run_id = new_run_id()
        doc = {"id": run_id, "model": model, "project_id": project_id, "status": "queued", "stage": None,
               "epoch": None, "epochs": None, "metrics": {}, "error": None, "report": {}, "params": params or {},
               "reserved_version": None, "version": None, "created_at": now, "updated_at": now,
               "started_at": None, "finished_at": None}
        return self.documents.create(RUNS, doc, partition_key=run_id).data

    def get(self, run_id: str) -> dict[str, Any]:
        try:
            return self._unless_lost(self.documents.get(RUNS, run_id, partition_key=run_id).data)
        except DocumentNotFoundError:
            raise NotFound(f"training run {run_id!r} does not exist") from None

    def _silent(self, run: dict[str, Any]) -> bool:
        if run["status"] != "running":
            return False
        last = run.get("heartbeat_at") or run["updated_at"]
        return datetime.now(UTC) - datetime.fromisoformat(last) > self.lost_after

    def _unless_lost(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run, marked lost first when its trainer went silent."""
        if not self._silent(run):
            return run

        def apply(current: dict[str, Any]) -> dict[str, Any]:
            if not self._silent(current):  # a heartbeat arrived meanwhile
                return {}
            now = utc_now()
            seconds = int(self.lost_after.total_seconds())
            return {"status": "lost", "error": f"no heartbeat from the trainer for over {seconds} s; it was "
                                               "probably killed", "finished_at": now, "updated_at": now}

        return self._patch(run["id"], apply)

    def list(self, *, model: str | None, status: str | None, limit: int,
             continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        filters = [Filter("model", "eq", model)] if model else []
        if status:
            filters.append(Filter("status", "eq", status))
        query = Query(filters=tuple(filters), order_by="created_at", descending=True)
        page = self.documents.query(RUNS, query, limit=limit, continuation=continuation)
        return [self._unless_lost(doc.data) for doc in page.items], page.continuation

    def update(self, run_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a progress report; a finished run refuses every change."""
        status = changes.get("status")
        if status == "failed" and not changes.get("error"):
            raise InvalidContent("a failed run needs an `error` saying what went wrong")

        def apply(current: dict[str, Any]) -> dict[str, Any]:
            fields = {key: changes[key] for key in _UPDATABLE if changes.get(key) is not None}
            now = utc_now()
            if status is not None and status != current["status"]:
                fields["status"] = status
                if status == "running" and current["started_at"] is None:
                    fields["started_at"] = now
                if status in FINISHED:
                    fields["finished_at"] = now
            elif current["status"] == "queued" and fields:
                # Progress from a run nobody marked running yet: it is running.
                fields.update(status="running", started_at=now)
            return {**fields, "updated_at": now, "heartbeat_at": now}

        self.get(run_id)  # a silent run becomes lost before a late report could revive it
        return self._patch(run_id, apply)

    def cancel(self, run_id: str, reason: str = "") -> dict[str, Any]:
        """Stop a queued or running run: it registers nothing, and its next progress report is refused
        (409 `run_finished`), which tells the trainer to stop."""

        def apply(current: dict[str, Any]) -> dict[str, Any]:
            now = utc_now()
            return {"status": "cancelled", "finished_at": now, "updated_at": now,
                    "error": f"cancelled: {reason}" if reason else "cancelled"}

        return self._patch(run_id, apply)

    def reserve_version(self, run_id: str) -> dict[str, Any]:
        """The version number this run registers under; the same number on every call."""
        run = self.get(run_id)
        if run["reserved_version"] is None:
            self._refuse_finished(run, "reserve a version")
            number = self._take_version_number(run["model"])

            def apply(current: dict[str, Any]) -> dict[str, Any]:
                if current["reserved_version"] is not None:  # a concurrent call reserved first: keep that
                    return {}
                return {"reserved_version": number, "updated_at": utc_now()}

            run = self._patch(run_id, apply)
        return {"run_id": run_id, "model": run["model"], "version": run["reserved_version"]}

    def version_for_registration(self, run_id: str, model: str) -> int | None:
        """Check a run may register a version of `model`; its reserved number, if it has one."""
        run = self.get(run_id)
        if run["model"] != model:
            raise Conflict(f"training run {run_id!r} trains model {run['model']!r}, not {model!r}")
        self._refuse_finished(run, "register a version")
        reserved = run["reserved_version"]
        return int(reserved) if reserved is not None else None

    def mark_registered(self, run_id: str, version: int) -> dict[str, Any]:
        def apply(current: dict[str, Any]) -> dict[str, Any]:
            now = utc_now()
            return {"status": "succeeded", "version": version, "stage": "registered", "finished_at": now,
                    "updated_at": now, "started_at": current["started_at"] or now}

        return self._patch(run_id, apply, allow_finished=False)

    def set_job(self, run_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """Record what the run's Kubernetes Job is doing; also after the run finished. The first final
        state recorded (succeeded or failed, with its reason) stays: a later read of the Job, by another
        registry replica or after its TTL removed it, does not replace what was seen first."""

        def apply(current: dict[str, Any]) -> dict[str, Any]:
            recorded = current.get("job") or {}
            if recorded == job or (recorded.get("phase") in JOB_FINAL and recorded.get("name") == job.get("name")):
                return {}
            return {"job": job}

        return self._patch(run_id, apply, allow_finished=True)

    # -- helpers -------------------------------------------------------------------
    @staticmethod
    def _refuse_finished(run: dict[str, Any], action: str) -> None:
        if run["status"] in FINISHED:
            raise Conflict(f"training run {run['id']!r} has {run['status']}; it cannot {action}",
                           code="run_finished")

    def _patch(self, run_id: str, apply: Callable[[dict[str, Any]], dict[str, Any]], *,
               allow_finished: bool = False) -> dict[str, Any]:
        # Read, check the state, write only if nobody wrote in between: a finished run stays finished.
        while True:
            try:
                current = self.documents.get(RUNS, run_id, partition_key=run_id)
            except DocumentNotFoundError:
                raise NotFound(f"training run {run_id!r} does not exist") from None
            if not allow_finished:
                self._refuse_finished(current.data, "change")
            fields = apply(current.data)
            if not fields:
                return current.data
            try:
                return self.documents.patch(RUNS, run_id, partition_key=run_id, set_fields=fields,
                                            if_match=current.etag).data
            except PreconditionFailedError:
                continue
