"""Runs whose trainer the registry starts as a Kubernetes Job (or, on one machine, as a local
process: `launch.on = "local"`, services/registry/local_trainers.py), and following those Jobs.

`POST /v1/runs` with `launch` creates the run (queued) and then its Job from the chart's trainer
CronJob (services.registry.kubernetes_jobs); the trainer reports on the run as any trainer does. Reading
such a run also reads its Job, so a trainer that could not report — killed for going over its memory
limit, stopped at its deadline, never scheduled — still leaves a run that says `failed` and why.

A launched trainer gets a key of its own run (visiondock.auth.RunKeys): `train`, scoped to the run's
project and model, expiring at the Job's deadline (or after VISIONDOCK_RUN_KEY_LIFETIME_SECONDS for a
local process); never this service's key. Without VISIONDOCK_RUN_KEY_SECRET nothing is launched.
Its command line comes from the run's params through `trainer_argv` (training options only): any
other name is refused (422) before the run exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from visiondock.auth import RunKeys
from visiondock.errors import Conflict, InvalidContent, NotFound, Unavailable
from visiondock.job_contract import InvalidOptionsError, TrainingJobError, trainer_argv

from .local_trainers import LocalTrainerLauncher
from .runs import FINISHED, JOB_FINAL, TrainingRuns
from .schemas import RunCreate

if TYPE_CHECKING:  # the `kubernetes` extra; a registry that starts no Jobs runs without it
    from .kubernetes_jobs import TrainingJobLauncher

log = logging.getLogger(__name__)
# A run key outlives its Job's deadline by this much: the trainer reports its failure after the deadline.
RUN_KEY_GRACE_SECONDS = 600.0


def _trainer_options(body: RunCreate) -> tuple[str, list[str]]:
    """The project a launched trainer trains, and its options as flags."""
    project = body.project_id or body.model
    try:
        options = trainer_argv(body.params)
    except InvalidOptionsError as exc:
        raise InvalidContent(str(exc)) from None
    if body.model != project:
        options = ["--model", body.model, *options]
    return project, options


class RunLaunches:
    def __init__(self, runs: TrainingRuns, jobs: TrainingJobLauncher | None, *,
                 local: LocalTrainerLauncher | None = None, keys: RunKeys | None = None,
                 key_lifetime: float = 24 * 3600.0) -> None:
        self.runs = runs
        self.jobs = jobs
        self.local = local
        self.keys = keys
        self.key_lifetime = key_lifetime

    def _key_issuer(self, run: dict[str, Any]) -> Callable[[float | None], str]:
        """The run's key, given the seconds its trainer may run (None: the default lifetime)."""
        keys = self.keys
        assert keys is not None

        def issue(deadline_seconds: float | None) -> str:
            lifetime = self.key_lifetime if deadline_seconds is None else deadline_seconds + RUN_KEY_GRACE_SECONDS
            return keys.issue(run_id=run["id"], project=run["project_id"] or run["model"], model=run["model"],
                              expires_at=time.time() + lifetime)

        return issue

    def _require_keys(self) -> None:
        if self.keys is None:
            raise Conflict("this registry has no run key secret (VISIONDOCK_RUN_KEY_SECRET, shared with the "
                           "annotation service), so it cannot give a trainer a key of its own and launches none",
                           code="launch_unavailable")

    def create(self, body: RunCreate) -> dict[str, Any]:
        if body.launch is None:
            return self.runs.create(body.model, project_id=body.project_id, params=body.params)
        if body.launch.on == "local":
            return self._create_local(body)
        if self.jobs is None:
            raise Conflict("this registry starts no training Jobs: install it with the Helm chart (which sets "
                           "VISIONDOCK_KUBERNETES_TRAINER_CRONJOB), or start the trainer yourself",
                           code="launch_unavailable")
        self._require_keys()
        project, options = _trainer_options(body)
        run = self.runs.create(body.model, project_id=project, params=body.params)
        try:
            job = self.jobs.launch(project, run_id=run["id"], args=options, gpu=body.launch.gpu,
                                   issue_key=self._key_issuer(run))
        except TrainingJobError as exc:
            self.runs.update(run["id"], {"status": "failed", "error": f"the training Job was not created: {exc}"})
            error = Conflict if exc.status == 409 else Unavailable
            raise error(f"the training Job was not created: {exc}", code="launch_failed") from None
        name, namespace = (job.metadata.name, job.metadata.namespace) if job.metadata else (None, None)
        return self.runs.set_job(run["id"], {"name": name, "namespace": namespace,
                                             "gpu": body.launch.gpu, "phase": "pending", "reason": None,
                                             "message": None})

    def _create_local(self, body: RunCreate) -> dict[str, Any]:
        if self.local is None:
            raise Conflict("this registry starts no local trainers (VISIONDOCK_TRAINING_LAUNCHER=none); start the "
                           "trainer yourself with --run-id", code="launch_unavailable")
        self._require_keys()
        project, options = _trainer_options(body)
        run = self.runs.create(body.model, project_id=project, params=body.params)
        try:
            self.local.launch(project, run_id=run["id"], args=options, api_key=self._key_issuer(run)(None))
        except OSError as exc:
            self.runs.update(run["id"], {"status": "failed", "error": f"the trainer could not start: {exc}"})
            raise Unavailable(f"the trainer could not start: {exc}", code="launch_failed") from None
        return run

    def follow(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run with its Job's latest state; a run whose Job failed before the trainer said so fails."""
        job = run.get("job")
        if self.jobs is None or not job or job["phase"] in JOB_FINAL:
            return run
        try:
            state = self.jobs.state(job["name"])
        except TrainingJobError as exc:  # the API server is away: say what was last seen
            log.warning("could not read job/%s: %s", job["name"], exc)
            return run
        run = self.runs.set_job(run["id"], {**job, "phase": state.phase, "reason": state.reason,
                                            "message": state.message})
        recorded = run["job"]  # the first final state seen stays (TrainingRuns.set_job)
        if recorded["phase"] == "failed" and run["status"] not in FINISHED:
            error = f"the training Job {job['name']} failed: {recorded['reason']}: {recorded['message']}"
            try:
                run = self.runs.update(run["id"], {"status": "failed", "error": error[:8000]})
            except Conflict:  # the trainer finished the run meanwhile: its word stands
                run = self.runs.get(run["id"])
        return run

    def logs(self, run: dict[str, Any], *, tail_lines: int) -> str:
        job = run.get("job")
        if not job:
            raise NotFound(f"training run {run['id']!r} has no Kubernetes Job (it was not created with `launch`)")
        if self.jobs is None:
            raise Conflict("this registry does not reach Kubernetes", code="launch_unavailable")
        try:
            return self.jobs.logs(job["name"], tail_lines=tail_lines)
        except TrainingJobError as exc:
            raise Unavailable(f"the training Job's log could not be read: {exc}",
                              code="kubernetes_unavailable") from None
