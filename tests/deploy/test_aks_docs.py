"""docs/deploy-aks.md runs as written: every shell block is valid bash, every resource is created before a
command uses it, the Kubernetes version is one AKS offers at the time, both AKS profiles sign in to storage
the way the storage account allows, the device plugin lands on the GPU pool the docs make, the documented
install renders, and the keys block makes exactly the Secret the chart reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.aks_docs import DEPLOY_DOC, ROOT, all_commands, every, flag, has, node_pools, shell_blocks
from tests.deploy.chart import manifests, render
from tests.deploy.test_keys_and_identities import SECRET_KEYS
from visiondock.auth import parse_entry

pytestmark = pytest.mark.chart

# NVIDIA's device plugin chart places its DaemonSet with this affinity unless told otherwise
# (deployments/helm/nvidia-device-plugin/values.yaml): labels from Node Feature Discovery, or one set by hand.
NVIDIA_DEFAULT_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In",
                           "values": ["true"]}]},
    {"matchExpressions": [{"key": "feature.node.kubernetes.io/cpu-model.vendor_id", "operator": "In",
                           "values": ["NVIDIA"]}]},
    {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]},
]}}}
NVIDIA_DEFAULT_TOLERATIONS = [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                              {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize("doc", [DEPLOY_DOC, DEPLOY_DOC.with_name("verify-on-a-cluster.md")], ids=lambda p: p.name)
def test_every_shell_block_is_valid_bash(doc: Path) -> None:
    for block in shell_blocks(doc):
        checked = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"{checked.stderr}\n{block}"


def _uses(word: str) -> Callable[[list[str]], bool]:
    return lambda command: any(word in token for token in command)


def test_every_resource_is_created_before_it_is_used() -> None:
    commands = all_commands()
    # (what, how it is made, how a later command uses it)
    rules: list[tuple[str, Callable[[list[str]], bool], Callable[[list[str]], bool]]] = [
        ("the resource group", lambda c: has(c, "az", "group", "create") and "$RG" in c,
         lambda c: c[:1] == ["az"] and ("$RG" in flag(c, "-g", "--resource-group"))),
        ("the container registry", lambda c: has(c, "az", "acr", "create") and "$ACR" in flag(c, "-n", "--name"),
         lambda c: "$ACR" in flag(c, "--attach-acr", "--registry") or any("$ACR.azurecr.io" in t for t in c)),
        ("the cluster", lambda c: has(c, "az", "aks", "create"),
         lambda c: has(c, "az", "aks") and "$CLUSTER" in flag(c, "--cluster-name") + flag(c, "-n")
         and not has(c, "az", "aks", "create")),
        ("the cluster's credentials", lambda c: has(c, "az", "aks", "get-credentials") or has(c, "kind", "create"),
         lambda c: c[:1] in (["kubectl"], ["helm"]) and not has(c, "helm", "repo")),
        ("the Kubernetes version", lambda c: c[0].startswith("K8S=$(az") and "get-versions" in c,
         lambda c: "$K8S" in c),
        ("the namespace", lambda c: has(c, "kubectl", "create", "namespace", "visiondock") or (
            c[:1] == ["helm"] and "--create-namespace" in c and "visiondock" in flag(c, "-n", "--namespace")),
         lambda c: c[:1] in (["kubectl"], ["helm"]) and "visiondock" in flag(c, "-n", "--namespace")
         and "--create-namespace" not in c),
        ("the storage account", lambda c: has(c, "az", "storage", "account", "create"),
         _uses("visiondockdata")),
        ("the Cosmos DB account", lambda c: has(c, "az", "cosmosdb", "create"),
         lambda c: "visiondock-docs" in flag(c, "-a", "--account-name") or any("visiondock-docs." in t for t in c)),
        ("the identities", lambda c: has(c, "az", "identity", "create"), _uses("client_id")),
        ("the Secret with the keys", lambda c: "visiondock-credentials" in c and has(c, "kubectl", "-n", "visiondock",
                                                                                      "create", "secret"),
         lambda c: has(c, "helm", "upgrade", "--install", "visiondock") and "helm/values/aks-gpu.yaml" in c),
    ]
    for what, makes, uses in rules:
        made = False
        for command in commands:
            if uses(command) and not makes(command):
                assert made, f"{' '.join(command)[:160]}\nuses {what} before any command makes it"
            made = made or makes(command)
        assert made, f"nothing makes {what}"


def test_the_kubernetes_version_is_one_aks_offers_now() -> None:
    creates = [c for c in all_commands() if has(c, "az", "aks", "create")]
    assert creates and all(flag(c, "--kubernetes-version") == ["$K8S"] for c in creates)
    text = DEPLOY_DOC.read_text()
    assert "az aks get-versions -l $LOC -o table" in text
    assert not re.search(r"--kubernetes-version\s+1\.\d+", text)


def test_both_aks_profiles_sign_in_to_storage_as_the_storage_account_allows() -> None:
    (create,) = [c for c in all_commands() if has(c, "az", "storage", "account", "create")]
    assert flag(create, "--allow-shared-key-access") == ["false"]
    for profile in ("aks-gpu", "aks-cpu"):
        values = yaml.safe_load((ROOT / "helm" / "values" / f"{profile}.yaml").read_text())
        assert values["azure"]["workloadIdentity"]["enabled"] is True, profile
        assert values["storage"]["blob"]["accountUrl"].startswith("https://"), profile  # no connection string
        docs = manifests(render(values))
        env = {e["name"] for d in docs if d["kind"] in ("Deployment", "CronJob", "Job")
               for c in _pod(d)["containers"] for e in c.get("env", [])}
        assert not env & {"VISIONDOCK_AZURE_STORAGE_CONNECTION_STRING", "VISIONDOCK_COSMOS_KEY"}, profile


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _term_matches(term: dict[str, Any], labels: dict[str, str]) -> bool:
    for expression in term.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
    return True


def test_the_device_plugin_lands_on_the_gpu_pool_the_docs_make() -> None:
    (install,) = [c for c in all_commands() if "nvdp/nvidia-device-plugin" in c]
    version = flag(install, "--version")
    assert version and re.fullmatch(r"\d+\.\d+\.\d+", version[0]), "the device plugin's chart version is pinned"
    values: dict[str, Any] = {"affinity": NVIDIA_DEFAULT_AFFINITY, "nodeSelector": {},
                              "tolerations": NVIDIA_DEFAULT_TOLERATIONS}
    for path in every(install, "-f", "--values"):
        values.update(yaml.safe_load((ROOT / path).read_text()))  # top-level keys replace the chart's
    for setting in every(install, "--set-json"):
        key, _, text = setting.partition("=")
        values[key] = json.loads(text)
    gpu = node_pools()["gpu"]
    # AKS adds its own labels; these are the ones the docs' commands decide.
    labels = {**gpu.labels, "kubernetes.azure.com/agentpool": gpu.name}
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert any(_term_matches(term, labels) for term in terms), f"no affinity term matches the GPU pool's {labels}"
    assert all(labels.get(k) == v for k, v in values["nodeSelector"].items())
    for taint in gpu.taints:
        assert any(t.get("key") == taint["key"] and t.get("operator") == "Exists" and t.get("effect") in (
            None, taint["effect"]) for t in values["tolerations"]), taint
    text = DEPLOY_DOC.read_text()
    assert "allocatable.nvidia\\.com/gpu" in text  # the check that the nodes now advertise their GPU


def test_the_documented_install_renders_with_an_identity_for_every_component_that_needs_one() -> None:
    installs = [c for c in all_commands() if has(c, "helm", "upgrade", "--install", "visiondock")
                and "helm/values/aks-gpu.yaml" in c]
    (install,) = installs
    assert "--wait" in install and install[install.index("-n") + 1] == "visiondock"
    values = yaml.safe_load((ROOT / "helm" / "values" / "aks-gpu.yaml").read_text())
    client_ids = {}
    for setting in every(install, "--set"):
        path, _, value = setting.partition("=")
        if value.startswith("$(client_id"):
            client_ids[path.rsplit(".", 1)[1]] = value = str(uuid.uuid4())
        value = value.replace("$ACR", "visiondockacr")
        node = values
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    docs = manifests(render(values, release="visiondock"))
    accounts = {d["metadata"]["name"]: d["metadata"].get("annotations", {}).get("azure.workload.identity/client-id")
                for d in docs if d["kind"] == "ServiceAccount"}
    # The identities the docs create and federate: one per component whose service account carries one.
    loop = next(c for c in all_commands() if c[:2] == ["for", "c"] and "purge-captures" in c)
    federated = {f"visiondock-{name}" for name in loop[3:]}
    wanted = {name for name, client in accounts.items() if client}
    assert wanted <= federated, wanted - federated
    for component, key in (("annotation", "annotation"), ("registry", "registry"), ("provision", "provision"),
                           ("purge-captures", "purgeCaptures")):
        assert accounts[f"visiondock-{component}"] == client_ids[key], component
    assert accounts["visiondock-scoring"] is None and "scoring" in client_ids  # used once it captures
    subject = next(c for c in all_commands() if has(c, "az", "identity", "federated-credential", "create"))
    assert flag(subject, "--subject") == ["system:serviceaccount:visiondock:visiondock-$c"]


def test_the_keys_block_makes_the_secret_the_chart_reads(tmp_path: Path) -> None:
    text = DEPLOY_DOC.read_text()
    keys_section = text[text.index("## Keys"):text.index("## TLS and the Gateway")]
    (block,) = re.findall(r"^```sh\n(.*?)^```", keys_section, re.M | re.S)
    fake = tmp_path / "bin"
    fake.mkdir()
    # A kubectl that records the Secret it is asked to make, as the API server would store it.
    (fake / "kubectl").write_text("""#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
if "secret" in args:
    data = {}
    for arg in args:
        if arg.startswith("--from-literal="):
            key, value = arg.split("=", 1)[1].split("=", 1)
            data[key] = value
        elif arg.startswith("--from-file="):
            name = arg.split("=", 1)[1]
            data[name] = open(name).read()
    json.dump({"name": args[args.index("generic") + 1], "data": data}, open("secret.json", "w"))
""")
    (fake / "kubectl").chmod(0o755)
    assert shutil.which("openssl") and shutil.which("sha256sum"), "the block needs openssl and sha256sum"
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}, timeout=60)
    assert ran.returncode == 0, ran.stderr
    secret = json.loads((tmp_path / "secret.json").read_text())
    profile = yaml.safe_load((ROOT / "helm" / "values" / "aks-gpu.yaml").read_text())
    assert secret["name"] == profile["secrets"]["existingSecret"]
    assert set(secret["data"]) == set().union(*SECRET_KEYS.values())  # every key the chart reads, no other
    entries = dict(parse_entry(line) for line in secret["data"]["api-key-entries"].splitlines())
    for component in ("annotation", "registry", "scoring"):
        principal = entries[hashlib.sha256(secret["data"][f"{component}-api-key"].encode()).hexdigest()]
        assert principal.name == component and principal.roles == {"predict"}
    assert {p.name for p in entries.values() if "admin" in p.roles} == {"admin"}
    assert len(secret["data"]["run-key-secret"]) == 64


def test_the_docs_speak_of_the_cuda_the_images_ship() -> None:
    text = DEPLOY_DOC.read_text()
    assert "580" in text and "CUDA 13" in text
    assert "CUDA 12.8" not in text and "driver for CUDA 12" not in text
    for paragraph in text.split("\n\n"):
        if "CUDA 12" in paragraph:  # only to say why the images are not on CUDA 12
            assert "1.26" in paragraph or "1.27" in paragraph, paragraph
