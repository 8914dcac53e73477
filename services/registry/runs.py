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
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from visiondock.errors import Conflict, InvalidContent, NotFound
from visiondock.storage import DocumentNotFoundError, DocumentStore, Filter, PreconditionFailedError, Query
from visiondock.timeutil import utc_now

RUNS = "training_runs"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
_UPDATABLE = ("stage", "epoch", "epochs", "metrics", "error", "report")


def new_run_id() -> str:
    return f"run-{secrets.token_hex(8)}"


class TrainingRuns:
    def __init__(self, documents: DocumentStore, take_version_number: Callable[[str], int]) -> None:
        self.documents = documents
        self._take_version_number = take_version_number

    def create(self, model: str, *, project_id: str | None = None, params: dict[str, Any] | None = None) -> dict:
        now = utc_now()
        run_id = new_run_id()
        doc = {"id": run_id, "model": model, "project_id": project_id, "status": "queued", "stage": None,
               "epoch": None, "epochs": None, "metrics": {}, "error": None, "report": {}, "params": params or {},
               "reserved_version": None, "version": None, "created_at": now, "updated_at": now,
               "started_at": None, "finished_at": None}
        return self.documents.create(RUNS, doc, partition_key=run_id).data

    def get(self, run_id: str) -> dict[str, Any]:
        try:
            return self.documents.get(RUNS, run_id, partition_key=run_id).data
        except DocumentNotFoundError:
            raise NotFound(f"training run {run_id!r} does not exist") from None

    def list(self, *, model: str | None, status: str | None, limit: int,
             continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        filters = [Filter("model", "eq", model)] if model else []
        if status:
            filters.append(Filter("status", "eq", status))
        query = Query(filters=tuple(filters), order_by="created_at", descending=True)
        page = self.documents.query(RUNS, query, limit=limit, continuation=continuation)
        return [doc.data for doc in page.items], page.continuation

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
            return {**fields, "updated_at": now}

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
        return run["reserved_version"]

    def mark_registered(self, run_id: str, version: int) -> dict[str, Any]:
        def apply(current: dict[str, Any]) -> dict[str, Any]:
            now = utc_now()
            return {"status": "succeeded", "version": version, "stage": "registered", "finished_at": now,
                    "updated_at": now, "started_at": current["started_at"] or now}

        return self._patch(run_id, apply, allow_finished=False)

    def set_job(self, run_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """Record what the run's Kubernetes Job is doing; also after the run finished."""
        return self._patch(run_id, lambda current: {} if current.get("job") == job else {"job": job},
                           allow_finished=True)

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
