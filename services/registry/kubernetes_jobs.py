"""Training Jobs on Kubernetes, made from the trainer CronJob the Helm chart installs.

One source of truth: the chart renders the trainer as a suspended CronJob (`<release>-trainer`, and
`<release>-trainer-gpu` for GPU nodes). Its jobTemplate holds the image, resources, GPU requests,
volumes (the feature cache), backoffLimit, activeDeadlineSeconds and ttlSecondsAfterFinished. The
launcher reads that CronJob from the API server and makes a Job from it exactly as
`kubectl create job NAME --from=cronjob/<release>-trainer` does (same labels and annotations, the
CronJob as owner), then adds what one run needs: the project in the environment and the run id and
options as arguments, and the run's own key as the trainer's VISIONDOCK_API_KEY. Whatever key or
credential the template gives its container (WITHHELD_SETTINGS) is taken out: a launched trainer holds
its run's key and nothing more powerful. The registry starts runs with it; `visiondock train --on
kubernetes` goes through the registry. Unlike kubectl's, its Jobs are owned but not controlled by the
CronJob: the CronJob controller removes the finished Jobs it controls beyond its history limits
(suspended or not), and a run's Job must stay, with its pods' logs and reasons, until
ttlSecondsAfterFinished.

Following a Job: `state()` turns the Job's conditions and its pods' container states into one
phase (pending, running, succeeded, failed) and, for a failure, the reason a person acts on:
OOMKilled (the container went over its memory limit), DeadlineExceeded (activeDeadlineSeconds),
BackoffLimitExceeded, or why a pod cannot start (Unschedulable: e.g. no free `nvidia.com/gpu`;
ImagePullBackOff).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from visiondock.job_contract import (
    API_KEY_ENV,
    PROJECT_ENV,
    TRAINER_CONTAINER,
    WITHHELD_SETTINGS,
    KubernetesSettings,
    TrainingJobError,
    job_name,
)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
RUN_LABEL = "visiondock.io/run-id"
PROJECT_LABEL = "visiondock.io/project"
# Waiting reasons that will not go away by waiting.
_STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
                    "CreateContainerError"})

Phase = Literal["pending", "running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobState:
    name: str
    phase: Phase
    reason: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _api_error(action: str, exc: ApiException) -> TrainingJobError:
    detail = exc.reason or ""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    if body:
        with contextlib.suppress(ValueError, AttributeError):  # not a Status object: keep the reason
            detail = json.loads(body).get("message") or detail
    return TrainingJobError(f"{action}: {exc.status} {detail}".strip(), status=exc.status or 0)


class TrainingJobLauncher:
    def __init__(self, api: client.ApiClient, *, namespace: str, cronjob: str, gpu_cronjob: str = "") -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.cronjob = cronjob
        self.gpu_cronjob = gpu_cronjob

    @classmethod
    def from_environment(cls, settings: KubernetesSettings | None = None) -> TrainingJobLauncher:
        """In a pod, its service account; elsewhere the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        settings = settings or KubernetesSettings()
        namespace = settings.namespace
        try:
            config.load_incluster_config()
            if not namespace and SERVICE_ACCOUNT_NAMESPACE.exists():
                namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        except config.ConfigException:
            kubeconfig = os.environ.get("KUBECONFIG")  # read now: the client reads it once, when imported
            try:
                config.load_kube_config(config_file=kubeconfig)
                _, context = config.list_kube_config_contexts(config_file=kubeconfig)
            except config.ConfigException as exc:
                raise TrainingJobError(f"no Kubernetes credentials: not in a pod, and no usable kubeconfig "
                                       f"({kubeconfig or '~/.kube/config'}): {exc}") from None
            namespace = namespace or (context or {}).get("context", {}).get("namespace", "")
        return cls(client.ApiClient(), namespace=namespace or "default", cronjob=settings.trainer_cronjob,
                   gpu_cronjob=settings.trainer_gpu_cronjob)

    def close(self) -> None:
        self.api.close()

    # -- making a Job --------------------------------------------------------------
    def template(self, *, gpu: bool = False) -> client.V1CronJob:
        name = self.gpu_cronjob if gpu else self.cronjob
        if not name:
            raise TrainingJobError("GPU training is not set up in this installation (trainer.gpu.enabled in "
                                   "the chart's values)" if gpu else "no trainer CronJob is configured",
                                   status=409)
        try:
            return self.batch.read_namespaced_cron_job(name, self.namespace)
        except ApiException as exc:
            raise _api_error(f"reading the trainer template cronjob/{name} in {self.namespace}", exc) from None

    def job_from(self, cronjob: client.V1CronJob, *, name: str, project: str | None = None,
                 args: Sequence[str] = (), api_key: str | None = None, controlled: bool = True) -> client.V1Job:
        """The Job `kubectl create job NAME --from=cronjob/...` makes, with the project set in the
        trainer container's environment and `args` after the template's arguments; with `api_key`, the
        trainer presents that key and inherits none of the template's keys or credentials.
        `controlled=False`: the CronJob owns the Job (it goes when the CronJob is deleted) without
        controlling it (its history limits do not remove it)."""
        cronjob_meta = _present(cronjob.metadata, "a CronJob's metadata")
        cronjob_name = _present(cronjob_meta.name, "a CronJob's name")
        template = _present(_present(cronjob.spec, f"cronjob/{cronjob_name}'s spec").job_template,
                            f"cronjob/{cronjob_name}'s jobTemplate")
        meta = template.metadata or client.V1ObjectMeta()
        annotations = {**(meta.annotations or {}), "cronjob.kubernetes.io/instantiate": "manual"}
        owner = client.V1OwnerReference(api_version="batch/v1", kind="CronJob", name=cronjob_name,
                                        uid=_present(cronjob_meta.uid, f"cronjob/{cronjob_name}'s uid"),
                                        controller=controlled, block_owner_deletion=True)
        spec = copy.deepcopy(_present(template.spec, f"cronjob/{cronjob_name}'s Job spec"))
        pod_spec = _present(spec.template.spec, f"cronjob/{cronjob_name}'s pod spec")
        job = client.V1Job(api_version="batch/v1", kind="Job",
                           metadata=client.V1ObjectMeta(name=name, namespace=self.namespace,
                                                        labels=dict(meta.labels or {}), annotations=annotations,
                                                        owner_references=[owner]),
                           spec=spec)
        containers = [c for c in pod_spec.containers if c.name == TRAINER_CONTAINER]
        if not containers:
            raise TrainingJobError(f"cronjob/{cronjob_name} has no container named {TRAINER_CONTAINER!r}",
                                   status=409)
        trainer = containers[0]
        if project is not None:
            env = [e for e in (trainer.env or []) if e.name != PROJECT_ENV]
            trainer.env = [*env, client.V1EnvVar(name=PROJECT_ENV, value=project)]
        if api_key is not None:
            if any(source.secret_ref is not None for source in trainer.env_from or []):
                raise TrainingJobError(f"cronjob/{cronjob_name} gives the trainer a whole Secret "
                                       "(envFrom secretRef); a launched trainer may hold only its run's key",
                                       status=409)
            env = [e for e in (trainer.env or []) if e.name not in WITHHELD_SETTINGS]
            trainer.env = [*env, client.V1EnvVar(name=API_KEY_ENV, value=api_key)]
        trainer.args = [*(trainer.args or []), *args]
        return job

    def launch(self, project: str, *, run_id: str, issue_key: Callable[[float | None], str],
               args: Sequence[str] = (), gpu: bool = False) -> client.V1Job:
        """Create the Job of one run: `--run-id` and the options follow the template's arguments; the
        trainer presents `issue_key(the Job's activeDeadlineSeconds)`, the run's own key."""
        template = self.template(gpu=gpu)
        name = job_name(project, run_id)
        job_template = _present(template.spec, "the trainer CronJob's spec").job_template
        deadline = job_template.spec.active_deadline_seconds if job_template and job_template.spec else None
        job = self.job_from(template, name=name, project=project,
                            args=["--run-id", run_id, *args], api_key=issue_key(deadline), controlled=False)
        job_meta = _present(job.metadata, "the Job's metadata")
        job_meta.labels = {**(job_meta.labels or {}), RUN_LABEL: run_id, PROJECT_LABEL: project}
        pod_template = _present(job.spec, "the Job's spec").template
        pod_meta = pod_template.metadata = pod_template.metadata or client.V1ObjectMeta()
        pod_meta.labels = {**(pod_meta.labels or {}), RUN_LABEL: run_id, PROJECT_LABEL: project}
        try:
            created: client.V1Job = self.batch.create_namespaced_job(self.namespace, job)
            return created
        except ApiException as exc:
            raise _api_error(f"creating job/{name}", exc) from None

    # -- following a Job -----------------------------------------------------------
    def _pods(self, name: str) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
        return sorted(pods, key=lambda p: (p.metadata and p.metadata.creation_timestamp) or 0)

    def state(self, name: str) -> JobState:
        try:
            job = self.batch.read_namespaced_job(name, self.namespace)
            pods = self._pods(name)
        except ApiException as exc:
            if exc.status == 404:
                return JobState(name, "failed", "NotFound", "the Job no longer exists (deleted, or removed after "
                                                            "ttlSecondsAfterFinished)")
            raise _api_error(f"reading job/{name}", exc) from None
        status: client.V1JobStatus = job.status or client.V1JobStatus()
        conditions = {c.type: c for c in status.conditions or [] if c.status == "True"}
        if "Complete" in conditions:
            return JobState(name, "succeeded")
        container_failure = _container_failure(pods)
        if "Failed" in conditions:
            failed = conditions["Failed"]
            if container_failure and container_failure[0] == "OOMKilled":
                return JobState(name, "failed", "OOMKilled",
                                f"{container_failure[1]}; the Job then failed: {failed.reason}")
            detail = failed.message or failed.reason or ""
            if container_failure:
                detail = f"{detail}; last attempt: {container_failure[1]}"
            return JobState(name, "failed", failed.reason or "Failed", detail)
        stuck = _pending_reason(pods)
        if stuck is not None:
            return JobState(name, "pending", stuck[0], stuck[1])
        if status.active and any(p.status and p.status.phase == "Running" for p in pods):
            return JobState(name, "running", *(container_failure or (None, None)))
        return JobState(name, "pending", *(container_failure or (None, None)))

    def logs(self, name: str, *, tail_lines: int = 200) -> str:
        """The trainer container's log of the Job's latest pod ('' when no pod has started)."""
        try:
            pods = self._pods(name)
            if not pods:
                return ""
            pod_name = _present(pods[-1].metadata, "a pod's metadata").name
            log: str = self.core.read_namespaced_pod_log(_present(pod_name, "a pod's name"), self.namespace,
                                                         container=TRAINER_CONTAINER, tail_lines=tail_lines)
            return log
        except ApiException as exc:
            if exc.status == 400:  # the container has not started yet
                return ""
            raise _api_error(f"reading the log of job/{name}", exc) from None


Present = TypeVar("Present")


def _present(value: Present | None, what: str) -> Present:
    """`value`, which the API server always fills in; a clear error where an object lacks it."""
    if value is None:
        raise TrainingJobError(f"the Kubernetes API answered without {what}", status=502)
    return value


def _container_failure(pods: list[client.V1Pod]) -> tuple[str, str] | None:
    """The latest terminated trainer container that did not succeed: (reason, description)."""
    found: tuple[str, str] | None = None
    for pod in pods:
        for status in (pod.status.container_statuses or []) if pod.status else []:
            if status.name != TRAINER_CONTAINER:
                continue
            for state in (status.state, status.last_state):
                ended = state.terminated if state else None
                if ended is None or ended.exit_code == 0:
                    continue
                reason = ended.reason or "Error"
                if reason == "OOMKilled":
                    text = f"the trainer went over its memory limit and was killed (exit {ended.exit_code})"
                else:
                    text = f"the trainer exited with code {ended.exit_code} ({reason})"
                found = (reason, text)
    return found


def _pending_reason(pods: list[client.V1Pod]) -> tuple[str, str] | None:
    """Why the latest pod cannot start, when that will not fix itself by waiting a moment."""
    if not pods or not pods[-1].status:
        return None
    status = pods[-1].status
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason:
            return condition.reason, condition.message or ""
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason in _STUCK:
            return waiting.reason, waiting.message or ""
    return None
