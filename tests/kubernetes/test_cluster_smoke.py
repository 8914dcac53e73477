"""`make cluster-smoke` (tests/kubernetes/cluster_smoke.py) against a replayed API server: the release's
objects are the chart's rendered aks-gpu manifests as the API server returns them, the nodes, Job states and
pods are recorded conversations (tests/kubernetes/recorded). What needs the services over HTTP
(train-in-the-app, rollout) is skipped here, as the script skips it without their URLs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.deploy.chart import NAMESPACE, rendered_profile
from tests.kubernetes.cluster_smoke import ClusterSmoke
from tests.support.kube_replay import Exchange, ReplayServer, load_conversation

pytestmark = pytest.mark.kubernetes

RELEASE = "vd"
SERVER_FIELDS = {"uid": "7d1e2f3a-0b4c-4d5e-8f60-718293a4b5c6", "resourceVersion": "51000", "generation": 1,
                 "creationTimestamp": "2026-11-27T09:00:00Z"}


def _as_served(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered object as the API server returns it: its fields, quantities as strings, server metadata."""
    served = copy.deepcopy(doc)
    served["metadata"].update(SERVER_FIELDS)

    def quantities(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("requests", "limits") and isinstance(value, dict):
                    node[key] = {k: str(v) for k, v in value.items()}
                else:
                    quantities(value)
        elif isinstance(node, list):
            for item in node:
                quantities(item)

    quantities(served)
    return served


def _listing(kind: str, api_version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": "51230"},
            "items": items}


def release_exchanges(*, ready: bool = True) -> list[Exchange]:
    docs = rendered_profile("aks-gpu")
    deployments, pods = [], []
    for doc in (d for d in docs if d["kind"] == "Deployment"):
        served = _as_served(doc)
        replicas = served["spec"].setdefault("replicas", 2)  # set by the HPA where the chart leaves it out
        served["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                            "readyReplicas": replicas if ready else replicas - 1, "availableReplicas": replicas}
        deployments.append(served)
        for number in range(replicas):
            template = served["spec"]["template"]
            pods.append({"metadata": {"name": f"{doc['metadata']['name']}-6c9f7d8b4-{number}x",
                                      "namespace": NAMESPACE, "labels": template["metadata"]["labels"],
                                      **SERVER_FIELDS}, "spec": template["spec"], "status": {"phase": "Running"}})
    cronjobs = [_as_served(d) for d in docs if d["kind"] == "CronJob"]
    policies = [_as_served(d) for d in docs if d["kind"] == "NetworkPolicy"]
    base = f"/namespaces/{NAMESPACE}"
    return [Exchange("GET", f"/apis/apps/v1{base}/deployments", 200, _listing("Deployment", "apps/v1", deployments)),
            Exchange("GET", f"/apis/batch/v1{base}/cronjobs", 200, _listing("CronJob", "batch/v1", cronjobs)),
            *load_conversation("cluster-gpu-nodes"),
            Exchange("GET", f"/apis/networking.k8s.io/v1{base}/networkpolicies", 200,
                     _listing("NetworkPolicy", "networking.k8s.io/v1", policies)),
            Exchange("GET", f"/api/v1{base}/pods", 200, _listing("Pod", "v1", pods))]


def failure_exchanges() -> list[Exchange]:
    trainer = _as_served(next(d for d in rendered_profile("aks-gpu")
                              if d["kind"] == "CronJob" and d["metadata"]["name"] == "vd-visiondock-trainer"))
    jobs = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    created = {"metadata": {"uid": "0f4c1d7e-2a0b-4f59-9a51-6f3c2f5d8e11", "resourceVersion": "48001",
                            "creationTimestamp": "2026-11-27T10:00:00Z"}, "status": {}}
    deleted = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "$JOB", "group": "batch", "kind": "jobs"}}
    return [Exchange("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/vd-visiondock-trainer", 200, trainer),
            Exchange("POST", jobs, 201, {"$echo": created}), Exchange("POST", jobs, 201, {"$echo": created}),
            *load_conversation("job-oom-killed"), *load_conversation("job-deadline-exceeded"),
            Exchange("DELETE", f"{jobs}/$JOB", 200, deleted)]


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


def smoke_for(server: ReplayServer, lines: list[str]) -> ClusterSmoke:
    return ClusterSmoke(k8s.ApiClient(k8s.Configuration(host=server.url)), namespace=NAMESPACE, release=RELEASE,
                        timeout=5, poll_seconds=0.01, log=lines.append)


def test_the_api_checks_report_what_a_first_install_shows(api: Callable[..., ReplayServer]) -> None:
    server = api(release_exchanges(), failure_exchanges())
    lines: list[str] = []
    results = {check.name: check for check in smoke_for(server, lines).run()}
    # One GPU node advertises its GPU, the other has no device plugin pod: the check names it and the fix.
    assert results["gpu-nodes"].ok is False
    assert "aks-gpu-12345678-vmss000000: 1 nvidia.com/gpu" in results["gpu-nodes"].detail
    assert "aks-gpu-12345678-vmss000001: 0 nvidia.com/gpu (no device plugin pod" in results["gpu-nodes"].detail
    assert server.sent("GET", "/api/v1/nodes")[0].query == {"labelSelector": ["visiondock.io/pool=gpu"]}
    assert results["ready"].ok is True and "vd-visiondock-scoring 2/2 ready" in results["ready"].detail
    assert results["network-policies"].ok is True
    assert "annotation, registry, scoring" in results["network-policies"].detail
    # Jobs from the trainer template that go over their memory limit and past their deadline, with the
    # reasons the registry reports on runs; both deleted afterwards.
    assert results["failure-reasons"].ok is True, results["failure-reasons"].detail
    posted = [r.body for r in server.sent("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")]
    oom, deadline = posted
    trainer = oom["spec"]["template"]["spec"]["containers"][0]
    assert trainer["resources"]["limits"]["memory"] == "256Mi" and "bytearray" in trainer["command"][-1]
    assert deadline["spec"]["activeDeadlineSeconds"] == 20 and oom["spec"]["backoffLimit"] == 0
    assert all(job["metadata"]["ownerReferences"][0]["controller"] is False for job in posted)
    assert len(server.sent("DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/")) == 2
    assert results["train-in-the-app"].ok is None and results["rollout"].ok is None  # no URLs given
    assert len(lines) == len(results) and lines[0].startswith("gpu-nodes         FAILED")


def test_a_release_not_yet_ready_fails_the_ready_check(api: Callable[..., ReplayServer]) -> None:
    server = api(release_exchanges(ready=False))
    lines: list[str] = []
    (check,) = smoke_for(server, lines).run(["ready"])
    assert check.ok is False and "vd-visiondock-annotation 1/2 ready" in check.detail
