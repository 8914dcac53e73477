"""Least privilege in the rendered chart: each pod holds only the keys, credentials and Azure identity it
uses; the Secret the chart makes renders the same every time and rolls the pods when it changes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.deploy.chart import CHART, PROFILES, find, manifests, profile_values, render, rendered_profile
from visiondock.auth import parse_entry

pytestmark = pytest.mark.chart

COMPONENT = "app.kubernetes.io/component"
WORKLOAD_KINDS = ("Deployment", "CronJob", "Job", "Pod")
# What each workload may hold from the Secret (beside the storage keys, only without workload identity).
SECRET_KEYS = {
    "annotation": {"api-key-entries", "annotation-api-key", "run-key-secret"},
    "registry": {"api-key-entries", "registry-api-key", "run-key-secret"},
    "scoring": {"api-key-entries", "scoring-api-key"},
    "trainer": set(),          # its run key comes from the registry's launcher, per run
    "provision": set(),
    "purge-captures": set(),
    "tests": {"registry-api-key"},
}
STORAGE_KEYS = {"azure-storage-connection-string", "cosmos-key"}
# Reaches Azure storage (so may hold storage keys or an identity): scoring only when it captures predictions.
REACHES_STORAGE = {"annotation", "registry", "provision", "purge-captures"}

LOCAL_KEYS = {"secrets": {"create": True, "componentKeys": {"annotation": "a" * 64, "registry": "r" * 64,
                                                            "scoring": "s" * 64},
                          "runKeySecret": "k" * 64, "existingSecret": ""}}


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


def secret_keys_held(doc: dict[str, Any], secret: str) -> set[str]:
    """The keys of `secret` a workload's pods can read: through env, envFrom or mounted volumes."""
    spec = pod_template(doc)["spec"]
    held: set[str] = set()
    for container in spec.get("initContainers", []) + spec["containers"]:
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["name"] == secret:
                held.add(ref["key"])
        assert not any("secretRef" in source for source in container.get("envFrom", [])), "a whole Secret as env"
    for volume in spec.get("volumes", []):
        if volume.get("secret", {}).get("secretName") == secret:
            items = volume["secret"].get("items")
            assert items, f"{doc['metadata']['name']}: the whole Secret is mounted"
            held |= {item["key"] for item in items}
    return held


def workloads(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def component_of(doc: dict[str, Any]) -> str:
    return pod_template(doc)["metadata"]["labels"][COMPONENT]


@pytest.mark.parametrize("profile", PROFILES)
def test_no_pod_holds_a_key_it_does_not_use(profile: str) -> None:
    docs = rendered_profile(profile)
    values = profile_values(profile)
    secret = values["secrets"].get("existingSecret") or "vd-visiondock-credentials"
    identity = values.get("azure", {}).get("workloadIdentity", {}).get("enabled", False)
    for doc in workloads(docs):
        component = component_of(doc)
        held = secret_keys_held(doc, secret)
        storage_keys = held & STORAGE_KEYS
        assert held - STORAGE_KEYS == SECRET_KEYS[component], (doc["metadata"]["name"], held)
        if storage_keys:
            assert component in REACHES_STORAGE and not identity, (doc["metadata"]["name"], storage_keys)
        env = {e["name"] for c in pod_template(doc)["spec"]["containers"] for e in c.get("env", [])}
        if component == "trainer":
            # No key at all in the template: a Job gets its run key from whoever starts it.
            assert "VISIONDOCK_API_KEY" not in env and "VISIONDOCK_API_KEYS_FILE" not in env


def test_without_workload_identity_storage_keys_go_only_where_storage_is_used() -> None:
    values = {**profile_values("aks-cpu"), "azure": {"workloadIdentity": {"enabled": False}},
              "storage": {"blob": {"backend": "azure", "accountUrl": ""},
                          "documents": {"backend": "cosmos",
                                        "cosmosEndpoint": "https://visiondock-docs.documents.azure.com:443/"}}}
    for doc in workloads(manifests(render(values))):
        held = secret_keys_held(doc, "visiondock-credentials") & STORAGE_KEYS
        expected = STORAGE_KEYS if component_of(doc) in REACHES_STORAGE else set()
        assert held == expected, (doc["metadata"]["name"], held)


@pytest.mark.parametrize("profile", ["aks-gpu", "aks-cpu"])
def test_each_component_that_reaches_azure_has_its_own_identity_and_no_other_pod_has_one(profile: str) -> None:
    docs = rendered_profile(profile)
    client_ids = {}
    for account in (d for d in docs if d["kind"] == "ServiceAccount"):
        component = account["metadata"]["labels"][COMPONENT]
        annotations = account["metadata"].get("annotations", {})
        if component in REACHES_STORAGE:
            client_ids[component] = annotations["azure.workload.identity/client-id"]
        else:
            assert "azure.workload.identity/client-id" not in annotations, component
    assert set(client_ids) == REACHES_STORAGE
    assert len(set(client_ids.values())) == len(client_ids), "one identity per component"
    for doc in workloads(docs):
        labels = pod_template(doc)["metadata"]["labels"]
        uses = labels.get("azure.workload.identity/use") == "true"
        assert uses is (component_of(doc) in REACHES_STORAGE), doc["metadata"]["name"]
    # A scoring service that stores captured images reaches Blob Storage: then it signs in too.
    base = profile_values(profile)
    capturing = manifests(render({**base, "scoring": {**base["scoring"], "captureRate": 0.1}}))
    scoring = find(capturing, "Deployment", "vd-visiondock-scoring")
    assert pod_template(scoring)["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    account = find(capturing, "ServiceAccount", "vd-visiondock-scoring")
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"] == \
        base["azure"]["workloadIdentity"]["clientIds"]["scoring"]


@pytest.mark.parametrize("profile", [*PROFILES, "keys-in-values"])
def test_every_render_is_the_same(profile: str) -> None:
    values = {**profile_values("default"), **LOCAL_KEYS} if profile == "keys-in-values" else profile_values(profile)
    assert render(values) == render(values)


def test_the_charts_own_defaults_generate_no_key() -> None:
    # A generated key differs on every render: helm diff and Argo CD would rotate every key at each sync.
    import helm_python as helm

    try:
        first = render({})
    except helm.HelmError as refused:  # the defaults name no Secret: the chart says where keys come from
        assert "secrets.existingSecret" in str(refused)
        return
    assert first == render({})


def test_a_secret_made_by_the_chart_needs_its_keys_and_is_kept() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="componentKeys"):
        render({"secrets": {"create": True}})  # nothing is generated
    docs = manifests(render({**profile_values("default"), **LOCAL_KEYS}))
    secret = find(docs, "Secret", "vd-visiondock-credentials")
    annotations = secret["metadata"]["annotations"]
    assert "helm.sh/hook" not in annotations and annotations["helm.sh/resource-policy"] == "keep"
    entries = dict(parse_entry(line) for line in secret["stringData"]["api-key-entries"].splitlines() if line.strip())
    for component, key in LOCAL_KEYS["secrets"]["componentKeys"].items():
        principal = entries[hashlib.sha256(key.encode()).hexdigest()]
        assert principal.name == component and principal.roles == {"predict"}
        assert secret["stringData"][f"{component}-api-key"] == key
    # Capturing predictions adds `label` to scoring's own key (it hands them to the review queue).
    capturing = manifests(render({**profile_values("default"), **LOCAL_KEYS, "scoring": {"captureRate": 0.1}}))
    lines = find(capturing, "Secret", "vd-visiondock-credentials")["stringData"]["api-key-entries"].splitlines()
    assert any(line.startswith("scoring:predict,label:*:") for line in lines)


def _checksums(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {d["metadata"]["name"]: pod_template(d)["metadata"]["annotations"]["checksum/secret"]
            for d in workloads(docs) if d["kind"] in ("Deployment", "CronJob")}


def test_changing_a_key_rolls_every_pod() -> None:
    base = {**profile_values("default"), **LOCAL_KEYS}
    before = _checksums(manifests(render(base)))
    rotated = {**base, "secrets": {**base["secrets"], "runKeySecret": "n" * 64}}
    after = _checksums(manifests(render(rotated)))
    assert before.keys() == after.keys() and all(before[name] != after[name] for name in before)
    # A Secret made outside the chart: `helm upgrade` reads it (lookup), and secrets.revision rolls by hand.
    existing = profile_values("aks-gpu")
    same = _checksums(manifests(render(existing)))
    bumped = _checksums(manifests(render({**existing, "secrets": {**existing["secrets"], "revision": "2"}})))
    assert all(same[name] != bumped[name] for name in same)


def test_the_chart_refuses_to_start_without_a_place_for_the_keys() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="existingSecret"):
        render({})
    with helm.Chart.load(str(CHART)) as chart:
        for old in ({"secrets": {"apiKeys": "k"}}, {"secrets": {"apiKey": "k"}}):
            with pytest.raises(helm.HelmError):
                chart.validate_schema(old)
