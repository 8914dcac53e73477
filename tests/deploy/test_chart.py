"""The Helm chart, checked without a cluster: rendered with Helm's own code for each values file, linted,
validated against the Kubernetes API schemas of the oldest and newest versions it supports (strict),
scanned by checkov, and held to the invariants a safe rollout needs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    KUBERNETES_VERSION,
    NAMESPACE,
    NEWEST_KUBERNETES_VERSION,
    PROFILES,
    ROOT,
    find,
    manifests,
    profile_values,
    render,
    rendered_profile,
)
from tests.support.emulators import unavailable

pytestmark = pytest.mark.chart

WORKLOADS = ("Deployment", "CronJob", "Job", "Pod")
SERVICES = ("annotation", "registry", "scoring")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("profile", PROFILES)
def test_lint_finds_no_errors(profile: str) -> None:
    import helm_python as helm

    report = helm.lint(str(CHART), profile_values(profile), kube_version=f"v{KUBERNETES_VERSION}",
                       namespace=NAMESPACE)
    errors = [m for m in report["messages"] if m["severity"] >= 3] + report.get("errors", [])
    assert not errors, errors


# Kinds from custom resource definitions (Gateway API, Prometheus Operator, KEDA): kubernetes-validate has
# no schemas for them; tests/deploy/test_routes_and_scaling.py checks their fields.
CUSTOM_KINDS = frozenset({"Gateway", "HTTPRoute", "PodMonitor", "ScaledObject"})


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, NEWEST_KUBERNETES_VERSION])
@pytest.mark.parametrize("profile", PROFILES)
def test_every_manifest_is_valid_kubernetes(profile: str, version: str) -> None:
    import kubernetes_validate

    for doc in rendered_profile(profile):
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises on the first problem


@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_has_probes_resources_and_a_locked_down_security_context(profile: str) -> None:
    for doc in rendered_profile(profile):
        if doc["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is (doc["metadata"]["name"].endswith("-registry"))
        for container in containers(doc):
            where = f"{doc['kind']}/{doc['metadata']['name']} {container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000, where
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), where
            image = container["image"]
            assert not image.endswith(":latest") and (":" in image.rsplit("/", 1)[-1] or "@" in image), where
            if doc["kind"] == "Deployment":  # long-running: started, ready and alive are all probed
                assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), where
            # Every path the process writes is a volume: the root filesystem is read-only.
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, where


@pytest.mark.parametrize("profile", PROFILES)
def test_a_scoring_rollout_never_drops_below_its_replica_count(profile: str) -> None:
    docs = rendered_profile(profile)
    scoring = find(docs, "Deployment", "vd-visiondock-scoring")
    strategy = scoring["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0 and strategy["rollingUpdate"]["maxSurge"] >= 1
    container = containers(scoring)[0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # ready = a model loaded and warmed
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec(scoring)["terminationGracePeriodSeconds"] > pre_stop + 10  # room to drain after the wait
    hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if hpa:
        assert "replicas" not in scoring["spec"]  # the autoscaler owns the count
        assert hpa[0]["spec"]["minReplicas"] >= 2
    if profile != "local":
        pdb = find(docs, "PodDisruptionBudget", "vd-visiondock-scoring")
        assert pdb["spec"]["maxUnavailable"] == 1


def test_gpu_profile_places_scoring_and_training_on_gpu_nodes() -> None:
    docs = rendered_profile("aks-gpu")
    scoring = find(docs, "Deployment", "vd-visiondock-scoring")
    assert pod_spec(scoring)["nodeSelector"] == {"visiondock.io/pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(scoring)["tolerations"]
    assert containers(scoring)[0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert containers(scoring)[0]["image"].endswith("/visiondock/scoring-gpu:0.1.0")
    gpu_trainer = find(docs, "CronJob", "vd-visiondock-trainer-gpu")
    assert containers(gpu_trainer)[0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert containers(gpu_trainer)[0]["image"].endswith("/visiondock/trainer-gpu:0.1.0")
    cpu_trainer = find(docs, "CronJob", "vd-visiondock-trainer")
    assert "nvidia.com/gpu" not in containers(cpu_trainer)[0]["resources"]["limits"]
    cpu_scoring = find(rendered_profile("aks-cpu"), "Deployment", "vd-visiondock-scoring")
    assert pod_spec(cpu_scoring)["nodeSelector"] == {"visiondock.io/pool": "cpu"}
    assert "tolerations" not in pod_spec(cpu_scoring)
    assert "nvidia.com/gpu" not in containers(cpu_scoring)[0]["resources"]["limits"]
    # A GPU pod without ONNX Runtime's CUDA provider is not ready (the scoring service reads this).
    assert env_of(containers(scoring)[0])["VISIONDOCK_SCORING_REQUIRE_GPU"] == "true"
    assert "VISIONDOCK_SCORING_REQUIRE_GPU" not in env_of(containers(cpu_scoring)[0])


def test_trainer_template_is_a_suspended_cronjob_that_keeps_its_cache() -> None:
    docs = rendered_profile("default")
    cronjob = find(docs, "CronJob", "vd-visiondock-trainer")
    assert cronjob["spec"]["suspend"] is True
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1 and job["activeDeadlineSeconds"] > 0 and job["ttlSecondsAfterFinished"] > 0
    trainer = containers(cronjob)[0]
    assert trainer["name"] == "trainer" and trainer["command"] == ["python", "-m", "services.trainer"]
    env = env_of(trainer)
    assert env["VISIONDOCK_TRAINER_JOB_NAME"] == {
        "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}
    cache_mount = next(m for m in trainer["volumeMounts"] if m["name"] == "feature-cache")
    assert env["VISIONDOCK_TRAINER_CACHE_DIR"] == cache_mount["mountPath"]
    claim = next(v for v in pod_spec(cronjob)["volumes"] if v["name"] == "feature-cache")["persistentVolumeClaim"]
    pvc = find(docs, "PersistentVolumeClaim", claim["claimName"])
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # survives Jobs and uninstalls
    # Shared memory beyond the default 64 MiB, for the detector's DataLoader workers.
    assert {"name": "shm", "mountPath": "/dev/shm"} in trainer["volumeMounts"]
    shm = next(v for v in pod_spec(cronjob)["volumes"] if v["name"] == "shm")["emptyDir"]
    assert shm["medium"] == "Memory"
    # No cap by default (the trainer keeps the volume 10 % free); a cap reaches the trainer.
    assert "VISIONDOCK_TRAINER_CACHE_MAX_GB" not in env
    capped = find(manifests(render({**profile_values("default"), "trainer": {"cache": {"maxGB": 40}}})), "CronJob",
                  "vd-visiondock-trainer")
    assert env_of(containers(capped)[0])["VISIONDOCK_TRAINER_CACHE_MAX_GB"] == "40"


def test_only_the_registry_may_create_training_jobs() -> None:
    docs = rendered_profile("aks-gpu")
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [s["name"] for b in bindings for s in b["subjects"]] == ["vd-visiondock-registry"]
    role = find(docs, "Role", bindings[0]["roleRef"]["name"])
    creates = [r for r in role["rules"] if "create" in r["verbs"]]
    assert creates == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch"]}]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])
    registry = containers(find(docs, "Deployment", "vd-visiondock-registry"))[0]
    assert env_of(registry)["VISIONDOCK_KUBERNETES_TRAINER_CRONJOB"] == "vd-visiondock-trainer"
    assert env_of(registry)["VISIONDOCK_KUBERNETES_TRAINER_GPU_CRONJOB"] == "vd-visiondock-trainer-gpu"


def test_storage_is_provisioned_by_a_hook_before_install_and_upgrade() -> None:
    docs = rendered_profile("aks-cpu")
    hook = find(docs, "Job", "vd-visiondock-provision")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = containers(hook)[0]
    assert container["command"] == ["python", "-m", "visiondock.storage.provision"]
    env = env_of(container)
    assert env["VISIONDOCK_DOCUMENT_BACKEND"] == "cosmos" and env["VISIONDOCK_BLOB_BACKEND"] == "azure"
    # Embedded storage needs no hook; its data volume outlives the release.
    local = rendered_profile("local")
    assert not [d for d in local if d["kind"] == "Job"]
    data = find(local, "PersistentVolumeClaim", "vd-visiondock-data")
    assert data["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_network_policies_cover_every_pod() -> None:
    # Which calls they allow: tests/deploy/test_network_graph.py, against the calls the code makes.
    for profile in PROFILES:
        docs = rendered_profile(profile)
        policies = {d["metadata"]["name"].removeprefix("vd-visiondock-") for d in docs if d["kind"] == "NetworkPolicy"}
        for doc in docs:
            if doc["kind"] in WORKLOADS:
                labels = (doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob"
                          else doc if doc["kind"] == "Pod" else doc["spec"]["template"])["metadata"]["labels"]
                assert labels["app.kubernetes.io/component"] in policies, (profile, doc["metadata"]["name"])


def test_changing_the_served_model_rolls_the_scoring_pods_and_nothing_else() -> None:
    base = profile_values("aks-gpu")
    before = manifests(render(base))
    pinned = {**base, "scoring": {**base["scoring"], "model": {**base["scoring"]["model"], "version": 7}}}
    after = manifests(render(pinned))
    env = env_of(containers(find(after, "Deployment", "vd-visiondock-scoring"))[0])
    assert env["VISIONDOCK_SCORING_VERSION"] == "7"
    old = find(before, "Deployment", "vd-visiondock-scoring")["spec"]["template"]
    new = find(after, "Deployment", "vd-visiondock-scoring")["spec"]["template"]
    assert old != new  # a new pod template: the Deployment rolls, as `helm rollback` rolls back
    for component in ("annotation", "registry"):
        name = f"vd-visiondock-{component}"
        unchanged = find(before, "Deployment", name)["spec"]["template"]
        assert find(after, "Deployment", name)["spec"]["template"] == unchanged


def test_a_models_list_reaches_the_scoring_pods() -> None:
    base = profile_values("aks-cpu")
    listed = {**base, "scoring": {**base["scoring"], "models": ["shelf@staging", "faces:3"], "maxLoadedModels": 2}}
    env = env_of(containers(find(manifests(render(listed)), "Deployment", "vd-visiondock-scoring"))[0])
    assert env["VISIONDOCK_SCORING_MODELS"] == "shelf@staging,faces:3"
    assert env["VISIONDOCK_SCORING_MAX_LOADED_MODELS"] == "2"
    local = env_of(containers(find(rendered_profile("local"), "Deployment", "vd-visiondock-scoring"))[0])
    assert local["VISIONDOCK_SCORING_MODELS"] == "*@production"
    assert "VISIONDOCK_SCORING_MODELS" not in env_of(
        containers(find(rendered_profile("aks-gpu"), "Deployment", "vd-visiondock-scoring"))[0])


@pytest.mark.parametrize(("size", "cap_gb"), [("4Gi", 3.22), ("500Mi", 0.39), ("10G", 7.5), ("1.5Ti", 1236.95)])
def test_the_scoring_model_cache_is_pruned_below_its_volume_limit(size: str, cap_gb: float) -> None:
    """kubelet evicts a pod whose emptyDir outgrows its sizeLimit: the cache's own cap (what pruning keeps it
    under) is three quarters of that limit, whatever unit the size is written in."""
    base = profile_values("aks-cpu")
    values = {**base, "scoring": {**base["scoring"], "modelCacheSize": size}}
    scoring = find(manifests(render(values)), "Deployment", "vd-visiondock-scoring")
    env = env_of(containers(scoring)[0])
    assert float(env["VISIONDOCK_SCORING_CACHE_MAX_GB"]) == pytest.approx(cap_gb, abs=0.01)
    volume = next(v for v in pod_spec(scoring)["volumes"] if v["name"] == "model-cache")
    assert volume["emptyDir"]["sizeLimit"] == size


def test_the_schema_refuses_values_that_cannot_work() -> None:
    import helm_python as helm

    bad = [
        {"image": {"tag": "latest"}},
        {"scoring": {"profile": "tpu"}},
        {"storage": {"blob": {"backend": "s3"}}},
        {"trainer": {"job": {"backoffLimit": -1}}},
        {"trainer": {"cache": {"maxGB": 0}}},
        {"trainer": {"cache": {"maxGB": "40Gi"}}},
        {"scoring": {"model": {"version": "seven"}}},
        {"scoring": {"models": ["shelf@"]}},
        {"scoring": {"models": ["*:3"]}},
        {"scoringTypo": {}},
        {"metrics": {"port": 8080}},  # the API's own port
        {"routes": {"scoring": {"maxBodyMiB": 0, "timeoutSeconds": 60}}},
        {"scoring": {"captureRate": 2}},
        {"networkPolicy": {"extraEgress": {"scorer": []}}},
        {"ingress": {"hosts": {"annotation": "a.example.com"}}},  # hosts moved to the top level
    ]
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({})
        for values in bad:
            with pytest.raises(helm.HelmError):
                chart.validate_schema(values)


def _checkov() -> str:
    found = ROOT / ".tools" / "checkov" / "bin" / "checkov"
    if found.exists():
        return str(found)
    on_path = shutil.which("checkov")
    if on_path is None:
        unavailable("checkov is not installed: `make test` installs it in .tools/checkov")
    return on_path


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(tmp_path: Path) -> None:
    checkov = _checkov()
    for profile in PROFILES:
        (tmp_path / profile).mkdir()
        for number, doc in enumerate(rendered_profile(profile)):
            (tmp_path / profile / f"{number:02d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        [checkov, "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download",
         "-o", "json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for r in reports for c in r["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    assert skipped and all(len(c["check_result"].get("suppress_comment") or "") > 20 for c in skipped)  # with why
    assert sum(r["summary"]["passed"] for r in reports) > 1000
