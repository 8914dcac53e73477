"""Training Jobs on Kubernetes: the launcher, the registry's run API and `visiondock train --on kubernetes`,
each talking through the real kubernetes client to a replayed API server (tests/support/kube_replay.py).

The trainer template the replayed server hands out is the CronJob the Helm chart renders, so these
tests also hold the launcher to the chart: a Job is that jobTemplate, plus the project and run id.
The rest of each conversation (Job statuses, pods, logs) is recorded in tests/kubernetes/recorded in
the API server's wire format.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client as k8s

from services.registry.app import create_app
from services.registry.kubernetes_jobs import TrainingJobError, TrainingJobLauncher
from tests.deploy.chart import NAMESPACE, find, rendered_profile
from tests.support.kube_replay import Exchange, ReplayServer, load_conversation
from tests.support.stack import running_services
from visiondock.auth import RunKeys
from visiondock.job_contract import (
    JOB_NAME_ENV,
    PROJECT_ENV,
    WITHHELD_SETTINGS,
    project_from_environment,
    trainer_argv,
)
from visiondock.settings import LOCAL_DEV_API_KEY, Settings

pytestmark = pytest.mark.kubernetes

CPU_TEMPLATE = "vd-visiondock-trainer"
GPU_TEMPLATE = "vd-visiondock-trainer-gpu"
JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
RUN_ID = "run-0123456789abcdef"
RUN_KEY_SECRET = "a-test-run-key-secret-of-48-characters-0123456789"


def served_cronjob(name: str) -> dict[str, Any]:
    """The chart's CronJob as the API server returns it: what was applied, plus the server's fields."""
    cronjob = copy.deepcopy(find(rendered_profile("aks-gpu"), "CronJob", name))
    cronjob["metadata"].update(uid="5be0e3f2-8c4d-4a51-b0a4-1d2f3e4a5b6c", resourceVersion="40102", generation=1,
                               creationTimestamp="2026-11-20T09:00:00Z")
    cronjob["status"] = {}
    # The server writes every quantity as a string ("1", "16Gi"), whatever form it was applied in.
    for container in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
        for bound in ("requests", "limits"):
            quantities = container["resources"].get(bound, {})
            quantities.update({key: str(value) for key, value in quantities.items()})
    return cronjob


def launch_exchanges(template: str = CPU_TEMPLATE) -> list[Exchange]:
    created = {"metadata": {"uid": "0f4c1d7e-2a0b-4f59-9a51-6f3c2f5d8e11", "resourceVersion": "48001",
                            "creationTimestamp": "2026-11-27T10:00:00Z", "generation": 1}, "status": {}}
    return [Exchange("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{template}", 200,
                     served_cronjob(template)),
            Exchange("POST", JOBS, 201, {"$echo": created})]


@pytest.fixture
def api() -> Iterator[Callable[..., ReplayServer]]:
    servers: list[ReplayServer] = []

    def start(*exchanges: list[Exchange]) -> ReplayServer:
        server = ReplayServer([e for group in exchanges for e in group]).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        assert not server.unexpected, f"requests the recording does not answer: {server.unexpected}"


def launcher_for(server: ReplayServer, *, gpu_cronjob: str = GPU_TEMPLATE) -> TrainingJobLauncher:
    return TrainingJobLauncher(k8s.ApiClient(k8s.Configuration(host=server.url)), namespace=NAMESPACE,
                               cronjob=CPU_TEMPLATE, gpu_cronjob=gpu_cronjob)


def trainer_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == "trainer")


class KeyIssuer:
    """What the registry hands `launch`: the run's key, given the Job's deadline (recorded here)."""

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []

    def __call__(self, deadline: float | None) -> str:
        self.deadlines.append(deadline)
        return "vdr1_the-runs-own-key"


def test_a_launched_job_is_the_charts_template_plus_the_project_and_run(api: Callable[..., ReplayServer]) -> None:
    server = api(launch_exchanges())
    issued = KeyIssuer()
    job = launcher_for(server).launch("flowers", run_id=RUN_ID, issue_key=issued,
                                      args=trainer_argv({"mode": "advanced", "int8": False}))

    assert isinstance(job, k8s.V1Job) and job.metadata.uid  # the server's answer, parsed by the client
    posted = server.sent("POST", JOBS)[0].body
    template = served_cronjob(CPU_TEMPLATE)
    # What kubectl create job --from=cronjob/... makes: the template's labels and annotations, the CronJob
    # as owner, and the jobTemplate's spec.
    assert posted["metadata"]["name"] == "train-flowers.0123456789abcdef"
    assert posted["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert posted["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                                      "name": CPU_TEMPLATE, "uid": template["metadata"]["uid"],
                                                      "controller": False, "blockOwnerDeletion": True}]
    labels = template["spec"]["jobTemplate"]["metadata"]["labels"]
    assert posted["metadata"]["labels"] == {**labels, "visiondock.io/run-id": RUN_ID,
                                            "visiondock.io/project": "flowers"}
    # The spec is the template's, field for field, but for the run's own additions.
    expected = copy.deepcopy(template["spec"]["jobTemplate"]["spec"])
    pod = expected["template"]
    pod["metadata"]["labels"].update({"visiondock.io/run-id": RUN_ID, "visiondock.io/project": "flowers"})
    trainer = trainer_container(pod["spec"])
    # The template's keys and credentials are taken out: the trainer presents its run's key, nothing else.
    trainer["env"] = [e for e in trainer["env"] if e["name"] not in WITHHELD_SETTINGS]
    trainer["env"] += [{"name": PROJECT_ENV, "value": "flowers"},
                       {"name": "VISIONDOCK_API_KEY", "value": "vdr1_the-runs-own-key"}]
    trainer["args"] += ["--run-id", RUN_ID, "--mode", "advanced", "--no-int8"]
    assert posted["spec"] == expected
    assert posted["spec"]["backoffLimit"] == 1 and posted["spec"]["activeDeadlineSeconds"] == 21600
    assert posted["spec"]["ttlSecondsAfterFinished"] == 86400
    # The run's key expires with the Job's deadline.
    assert issued.deadlines == [21600]
    # The trainer in that container reads the project back from its environment.
    env = {e["name"]: e.get("value", "") for e in trainer_container(posted["spec"]["template"]["spec"])["env"]}
    assert project_from_environment(env) == "flowers"
    # The chart's template gives the trainer no key of its own (tests/deploy/test_keys_and_identities.py), and
    # the Job holds the run's key only.
    template_env = trainer_container(template["spec"]["jobTemplate"]["spec"]["template"]["spec"])["env"]
    assert not {e["name"] for e in template_env} & set(WITHHELD_SETTINGS)
    keys_given = [e for e in env if e.startswith("VISIONDOCK_API_KEY")]
    assert keys_given == ["VISIONDOCK_API_KEY"] and env["VISIONDOCK_API_KEY"] == "vdr1_the-runs-own-key"
    secrets_given = [e for e in trainer_container(posted["spec"]["template"]["spec"])["env"]
                     if "secretKeyRef" in e.get("valueFrom", {})]
    assert secrets_given == []


def test_launched_jobs_stay_until_their_ttl_whatever_the_cronjobs_history_limits(
        api: Callable[..., ReplayServer]) -> None:
    # The CronJob controller deletes the oldest finished Jobs it *controls* beyond successfulJobsHistoryLimit
    # and failedJobsHistoryLimit, suspended or not. A run's Job is owned by the template (removed with it)
    # but not controlled, so only ttlSecondsAfterFinished removes it, with its logs and failure reasons.
    server = api(launch_exchanges())
    launcher_for(server).launch("flowers", run_id=RUN_ID, issue_key=KeyIssuer())
    posted = server.sent("POST", JOBS)[0].body
    (owner,) = posted["metadata"]["ownerReferences"]
    assert owner["kind"] == "CronJob" and owner["controller"] is False
    assert posted["spec"]["ttlSecondsAfterFinished"] == 86400
    # Jobs made with kubectl create job --from are the controller's: the chart keeps more of them than 3.
    cronjob = served_cronjob(CPU_TEMPLATE)["spec"]
    assert cronjob["successfulJobsHistoryLimit"] >= 20 and cronjob["failedJobsHistoryLimit"] >= 20
    # Trainer pods hold a run for hours: the cluster autoscaler may not drain them to save a node.
    pod_annotations = cronjob["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
    assert pod_annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


def test_a_jobs_outcome_stays_as_first_seen(api: Callable[..., ReplayServer],
                                            cluster_env: Callable[[ReplayServer], dict[str, str]],
                                            tmp_path: Path) -> None:
    # Two registry replicas: one reads the run while the Job has just failed (OOMKilled), the other, holding
    # an older copy of the run, reads it after the TTL removed the Job. The first word stays.
    server = api(launch_exchanges(), load_conversation("job-oom-killed"), load_conversation("job-gone"))
    cluster_env(server)
    with registry_client(tmp_path) as registry:
        stale = registry.post("/v1/runs", json={"model": "flowers", "launch": {"on": "kubernetes"}}).json()
        seen = registry.get(f"/v1/runs/{stale['id']}").json()
        assert (seen["job"]["phase"], seen["job"]["reason"]) == ("failed", "OOMKilled")
        other_replica = registry.app.state.launches  # same store, a copy of the run from before the failure
        assert stale["job"]["phase"] == "pending"
        later = other_replica.follow(stale)
        assert server.sent("GET", f"{JOBS}/{stale['job']['name']}")[-1]  # it did read the Job: gone by then
        assert (later["job"]["phase"], later["job"]["reason"]) == ("failed", "OOMKilled")
        assert "OOMKilled" in later["error"] and "memory limit" in later["error"]
        assert registry.get(f"/v1/runs/{stale['id']}").json()["job"]["reason"] == "OOMKilled"


def test_gpu_runs_use_the_gpu_template_and_ask_for_a_gpu(api: Callable[..., ReplayServer]) -> None:
    server = api(launch_exchanges(GPU_TEMPLATE))
    launcher_for(server).launch("flowers", run_id=RUN_ID, gpu=True, issue_key=KeyIssuer())
    trainer = trainer_container(server.sent("POST", JOBS)[0].body["spec"]["template"]["spec"])
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert trainer["image"].endswith("/visiondock/trainer-gpu:0.1.0")


def test_without_a_gpu_template_a_gpu_run_is_refused_before_any_request(api: Callable[..., ReplayServer]) -> None:
    server = api([])
    with pytest.raises(TrainingJobError, match="GPU training is not set up") as refused:
        launcher_for(server, gpu_cronjob="").launch("flowers", run_id=RUN_ID, gpu=True, issue_key=KeyIssuer())
    assert refused.value.status == 409 and server.requests == []


def test_the_api_servers_refusal_comes_back_in_its_own_words(api: Callable[..., ReplayServer]) -> None:
    forbidden = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
                 "message": 'jobs.batch is forbidden: User "system:serviceaccount:visiondock:vd-visiondock-scoring" '
                            'cannot create resource "jobs" in API group "batch" in the namespace "visiondock"',
                 "details": {"group": "batch", "kind": "jobs"}, "code": 403}
    server = api(launch_exchanges()[:1], [Exchange("POST", JOBS, 403, forbidden)])
    with pytest.raises(TrainingJobError, match="cannot create resource") as refused:
        launcher_for(server).launch("flowers", run_id=RUN_ID, issue_key=KeyIssuer())
    assert refused.value.status == 403


@pytest.mark.parametrize(("conversation", "phase", "reason", "words"), [
    ("job-oom-killed", "failed", "OOMKilled", "went over its memory limit and was killed (exit 137)"),
    ("job-deadline-exceeded", "failed", "DeadlineExceeded", "active longer than specified deadline"),
    ("job-unschedulable", "pending", "Unschedulable", "Insufficient nvidia.com/gpu"),
    ("job-gone", "failed", "NotFound", "ttlSecondsAfterFinished"),
])
def test_a_jobs_state_names_the_reason_to_act_on(api: Callable[..., ReplayServer], conversation: str, phase: str,
                                                 reason: str, words: str) -> None:
    server = api(load_conversation(conversation))
    state = launcher_for(server).state("train-flowers.0123456789abcdef")
    assert (state.phase, state.reason) == (phase, reason)
    assert words in (state.message or "")


def test_a_running_job_shows_its_log_then_completes(api: Callable[..., ReplayServer]) -> None:
    server = api(load_conversation("job-running-then-complete"))
    launcher = launcher_for(server)
    assert launcher.state("train-flowers").phase == "running"
    assert "epoch 3/20" in launcher.logs("train-flowers", tail_lines=50)
    assert server.sent("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/train-flowers-r8t3w/log")[0].query == {
        "container": ["trainer"], "tailLines": ["50"]}
    assert launcher.state("train-flowers").phase == "succeeded"
    pods_query = server.sent("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")[0].query
    assert pods_query == {"labelSelector": ["batch.kubernetes.io/job-name=train-flowers"]}


def test_kubectl_create_job_from_the_template_names_the_project() -> None:
    cronjob = k8s.ApiClient()._ApiClient__deserialize(served_cronjob(CPU_TEMPLATE), "V1CronJob")
    launcher = TrainingJobLauncher(k8s.ApiClient(), namespace=NAMESPACE, cronjob=CPU_TEMPLATE)
    job = launcher.job_from(cronjob, name="train-flowers")  # what `kubectl create job train-flowers --from` makes
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert PROJECT_ENV not in env
    assert env[JOB_NAME_ENV].value_from.field_ref.field_path == "metadata.labels['batch.kubernetes.io/job-name']"
    # The downward API hands the Job's name to the trainer, which reads the project from it.
    assert project_from_environment({JOB_NAME_ENV: "train-flowers"}) == "flowers"
    assert project_from_environment({JOB_NAME_ENV: "train-shelf-products.2"}) == "shelf-products"
    assert project_from_environment({JOB_NAME_ENV: "train-x", PROJECT_ENV: "flowers"}) == "flowers"
    assert project_from_environment({JOB_NAME_ENV: "nightly"}) is None


def test_options_a_run_may_not_set_are_refused() -> None:
    assert trainer_argv({"epochs": 5, "int8": False, "fp16": True, "head": None}) == ["--epochs", "5", "--no-int8"]
    for bad in ({"run_id": "x"}, {"registry_url": "http://elsewhere"}, {"--mode": "x"}, {"mode": ["a", "b"]},
                {"registry_ur": "http://elsewhere"}, {"annotation_ur": "http://elsewhere"}, {"cache": "/"},
                {"proj": "other"}, {"run": "run-1"}):
        with pytest.raises(ValueError):
            trainer_argv(bad)


# -- the registry's run API and the command line --------------------------------------------------
@pytest.fixture
def cluster_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[ReplayServer], dict[str, str]]:
    def point_at(server: ReplayServer) -> dict[str, str]:
        env = {"KUBECONFIG": str(server.kubeconfig(tmp_path / "kubeconfig", NAMESPACE)),
               "VISIONDOCK_KUBERNETES_TRAINER_CRONJOB": CPU_TEMPLATE}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        return env

    return point_at


def registry_client(home: Path, **settings: Any) -> TestClient:
    settings = {"run_key_secret": RUN_KEY_SECRET, **settings}
    app = create_app(Settings(home=home, log_format="text", log_level="WARNING", **settings))
    return TestClient(app, headers={"X-API-Key": LOCAL_DEV_API_KEY})


def test_a_run_created_with_launch_starts_its_job_and_fails_with_the_jobs_reason(
        api: Callable[..., ReplayServer], cluster_env: Callable[[ReplayServer], dict[str, str]],
        tmp_path: Path) -> None:
    server = api(launch_exchanges(), load_conversation("job-oom-killed"))
    cluster_env(server)
    with registry_client(tmp_path) as registry:
        for params in ({"run_id": "run-1"}, {"registry_ur": "http://127.0.0.1:9"}, {"cache": "/"}):
            refused = registry.post("/v1/runs", json={"model": "flowers", "params": params,
                                                      "launch": {"on": "kubernetes"}})
            assert refused.status_code == 422, refused.text
        assert registry.get("/v1/runs").json()["data"] == []  # refused before the run existed
        created = registry.post("/v1/runs", json={"model": "flowers", "params": {"mode": "advanced"},
                                                  "launch": {"on": "kubernetes"}})
        assert created.status_code == 201, created.text
        run = created.json()
        assert run["status"] == "queued" and run["job"]["name"] == "train-flowers." + run["id"][4:]
        assert run["job"]["namespace"] == NAMESPACE  # from the kubeconfig's context
        posted = server.sent("POST", JOBS)[0].body
        trainer = trainer_container(posted["spec"]["template"]["spec"])
        assert trainer["args"][-4:] == ["--run-id", run["id"], "--mode", "advanced"]
        # The Job's trainer holds the run's own key: train, on this run's project and model, until the deadline.
        key = next(e["value"] for e in trainer["env"] if e["name"] == "VISIONDOCK_API_KEY")
        principal = RunKeys(RUN_KEY_SECRET.encode()).identify(key)
        assert principal is not None and principal.name == run["id"] and principal.run_id == run["id"]
        assert principal.roles == {"train"} and principal.scopes == {"flowers"}
        assert RunKeys(RUN_KEY_SECRET.encode()).identify(key, now=time.time() + 21600 + 3600) is None
        run_key = {"X-API-Key": key}
        assert registry.get(f"/v1/runs/{run['id']}", headers=run_key).status_code == 200
        assert registry.get("/v1/models", headers=run_key).status_code == 403
        assert registry.put("/v1/models/flowers/aliases/production", json={"version": 1},
                            headers=run_key).status_code == 403

        # The trainer was OOM-killed before it could report: reading the run reads the Job and fails it.
        run = registry.get(f"/v1/runs/{run['id']}").json()
        assert run["status"] == "failed" and "OOMKilled" in run["error"] and "memory limit" in run["error"]
        assert run["job"]["phase"] == "failed" and run["job"]["reason"] == "OOMKilled"
        logs = registry.get(f"/v1/runs/{run['id']}/job-logs", params={"tail": 20})
        assert logs.status_code == 200 and "features: 720 images" in logs.text
        # A finished run's Job is not asked about again.
        asked = len(server.requests)
        assert registry.get(f"/v1/runs/{run['id']}").json()["status"] == "failed"
        assert len(server.requests) == asked


def test_a_registry_without_a_run_key_secret_launches_no_trainer(
        api: Callable[..., ReplayServer], cluster_env: Callable[[ReplayServer], dict[str, str]],
        tmp_path: Path) -> None:
    server = api([])
    cluster_env(server)
    with registry_client(tmp_path, run_key_secret=None) as registry:
        refused = registry.post("/v1/runs", json={"model": "flowers", "launch": {"on": "kubernetes"}})
        assert refused.status_code == 409 and "VISIONDOCK_RUN_KEY_SECRET" in refused.json()["detail"]
    assert server.requests == []


def test_a_registry_outside_kubernetes_says_it_starts_no_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISIONDOCK_KUBERNETES_TRAINER_CRONJOB", raising=False)
    with registry_client(tmp_path) as registry:
        refused = registry.post("/v1/runs", json={"model": "flowers", "launch": {"on": "kubernetes"}})
        assert refused.status_code == 409 and refused.json()["code"] == "launch_unavailable"
        plain = registry.post("/v1/runs", json={"model": "flowers"}).json()  # runs without launch work as before
        assert plain["job"] is None
        assert registry.get(f"/v1/runs/{plain['id']}/job-logs").status_code == 404


@pytest.mark.e2e
def test_visiondock_train_on_kubernetes_follows_the_job_to_its_end(
        api: Callable[..., ReplayServer], cluster_env: Callable[[ReplayServer], dict[str, str]],
        tmp_path: Path) -> None:
    server = api(launch_exchanges(), load_conversation("job-oom-killed"))
    env = cluster_env(server)
    with running_services(tmp_path / "home", env=env) as services:
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "train", "flowers", "--on", "kubernetes", "--mode", "advanced",
             "--poll-seconds", "0.2"],
            env={**os.environ, **services.environment()}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "job/train-flowers." in result.stdout and f"namespace {NAMESPACE}" in result.stdout
    assert "failed OOMKilled" in result.stdout or "OOMKilled" in result.stdout
    assert "the training failed" in result.stderr and "memory limit" in result.stderr
    trainer = trainer_container(server.sent("POST", JOBS)[0].body["spec"]["template"]["spec"])
    assert trainer["args"][:1] == ["--no-progress"] and "--mode" in trainer["args"]
