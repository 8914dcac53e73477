"""Every pod of an AKS profile fits the node pool it lands on, as docs/deploy-aks.md makes that pool: its
requests within what the VM size can allocate after AKS's reservations and the DaemonSets every node runs,
its memory limit too (a limit above it is reached only by the node running out of memory first)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy.aks_docs import NodePool, node_pools
from tests.deploy.chart import rendered_profile

pytestmark = pytest.mark.chart

MIB = 1024 * 1024


@dataclass(frozen=True)
class VmSize:
    cpus: int
    memory_gib: float
    gpus: int = 0


# Azure's VM sizes the docs name (Dsv5 and NCasT4_v3 series specifications).
VM_SIZES = {
    "Standard_D4ds_v5": VmSize(4, 16),
    "Standard_D8ds_v5": VmSize(8, 32),
    "Standard_D16ds_v5": VmSize(16, 64),
    "Standard_NC4as_T4_v3": VmSize(4, 28, 1),
    "Standard_NC8as_T4_v3": VmSize(8, 56, 1),
    "Standard_NC16as_T4_v3": VmSize(16, 110, 1),
}
# AKS node resource reservations: kube-reserved CPU by core count (millicores); memory (AKS 1.29 and later)
# the lesser of 20 MB per pod the node may run + 50 MB and 25 % of the memory, plus a 100 Mi eviction
# threshold. MB are counted as MiB here, which reserves slightly more.
KUBE_RESERVED_CPU_M = {1: 60, 2: 100, 4: 140, 8: 180, 16: 260, 32: 420, 64: 740}
EVICTION_MIB = 100
# What the DaemonSets on every node request (Cilium, the CSI drivers, cloud-node-manager, the device
# plugin...): a budget, not a measurement. `kubectl describe node` shows the real sum on a cluster.
DAEMONSETS_CPU_M = 500
DAEMONSETS_MIB = 1024


def allocatable(pool: NodePool) -> tuple[int, int]:
    """(millicores, MiB) a pod of this pool may request, after reservations and DaemonSets."""
    vm = VM_SIZES[pool.vm_size]
    assert pool.max_pods, f"pool {pool.name}: give --max-pods, which sets AKS's memory reservation"
    total_mib = int(vm.memory_gib * 1024)
    reserved_mib = min(20 * pool.max_pods + 50, total_mib // 4) + EVICTION_MIB
    return (vm.cpus * 1000 - KUBE_RESERVED_CPU_M[vm.cpus] - DAEMONSETS_CPU_M,
            total_mib - reserved_mib - DAEMONSETS_MIB)


def millicores(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def mebibytes(value: str | int) -> float:
    found = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G)?", str(value))
    assert found, value
    scale = {None: 1 / MIB, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2, "k": 1e3 / MIB, "M": 1e6 / MIB,
             "G": 1e9 / MIB}[found.group(2)]
    return float(found.group(1)) * scale


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _tolerates(spec: dict[str, Any], taint: dict[str, str]) -> bool:
    for toleration in spec.get("tolerations", []):
        if toleration.get("key") not in (None, taint["key"]):
            continue
        if toleration.get("effect") not in (None, "", taint["effect"]):
            continue
        if toleration.get("operator") == "Exists" or toleration.get("value") == taint["value"]:
            return True
    return False


def pools_for(spec: dict[str, Any], pools: dict[str, NodePool]) -> list[NodePool]:
    """The pools a pod may be scheduled on: its nodeSelector matches, it tolerates every taint."""
    selector = spec.get("nodeSelector", {})
    return [pool for pool in pools.values()
            if all(pool.labels.get(k) == v for k, v in selector.items())
            and all(_tolerates(spec, taint) for taint in pool.taints)]


@pytest.mark.parametrize("profile", ["aks-gpu", "aks-cpu"])
def test_every_pod_fits_the_node_pool_the_docs_make_for_it(profile: str) -> None:
    pools = node_pools()
    problems = []
    for doc in rendered_profile(profile):
        if doc["kind"] not in ("Deployment", "CronJob", "Job", "Pod"):
            continue
        spec = pod_spec(doc)
        candidates = pools_for(spec, pools)
        assert candidates, f"{doc['metadata']['name']}: no documented node pool takes it"
        for pool in candidates:
            cpu_m, memory_mib = allocatable(pool)
            for container in spec["containers"]:
                requests, limits = container["resources"]["requests"], container["resources"]["limits"]
                where = f"{profile} {doc['metadata']['name']} on {pool.name} ({pool.vm_size})"
                if millicores(requests["cpu"]) > cpu_m:
                    problems.append(f"{where}: requests {requests['cpu']} CPUs, {cpu_m}m allocatable")
                if mebibytes(requests["memory"]) > memory_mib:
                    problems.append(f"{where}: requests {requests['memory']}, {memory_mib} MiB allocatable")
                if mebibytes(limits["memory"]) > memory_mib:
                    problems.append(f"{where}: memory limit {limits['memory']} over {memory_mib} MiB allocatable")
                if millicores(limits["cpu"]) > VM_SIZES[pool.vm_size].cpus * 1000 - KUBE_RESERVED_CPU_M[
                        VM_SIZES[pool.vm_size].cpus]:
                    problems.append(f"{where}: CPU limit {limits['cpu']} over the node's allocatable CPUs")
                if int(requests.get("nvidia.com/gpu", 0)) > VM_SIZES[pool.vm_size].gpus:
                    problems.append(f"{where}: asks for a GPU the VM does not have")
    assert not problems, "\n".join(problems)


def test_gpu_pods_land_only_on_the_gpu_pool() -> None:
    pools = node_pools()
    for doc in rendered_profile("aks-gpu"):
        if doc["kind"] in ("Deployment", "CronJob", "Job", "Pod"):
            spec = pod_spec(doc)
            gpu = any("nvidia.com/gpu" in c["resources"].get("limits", {}) for c in spec["containers"])
            names = {pool.name for pool in pools_for(spec, pools)}
            assert names == ({"gpu"} if gpu else {"cpu"}), (doc["metadata"]["name"], names)
