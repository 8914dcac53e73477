"""The NetworkPolicies allow exactly the calls the code makes, in every profile.

The calls come from the code (tests/deploy/service_calls.py: which client each workload builds from which
`VISIONDOCK_*_URL` setting, the Kubernetes API, storage), each kept only where the profile's settings let
it happen. Where a URL setting points comes from the rendered ConfigMap and Services. The policies are
evaluated as a policy engine does (a connection needs an egress rule of some policy selecting the client
and an ingress rule of some policy selecting the server, on the server's port), for every pair of the
release's pods and for the peers outside it: DNS, Azure storage, the Kubernetes API server, the ingress
controller or Gateway, the metrics scraper.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, NAMESPACE, PROFILES, manifests, profile_values, render, rendered_profile
from tests.deploy.service_calls import (
    KUBERNETES_API,
    SERVICES,
    STORAGE,
    WORKLOAD_COMMANDS,
    all_calls,
    happens,
)

pytestmark = pytest.mark.chart

COMPONENT = "app.kubernetes.io/component"
AZURE_STORAGE_ADDRESS = "20.60.0.10"       # an address of Azure Storage's public range


@dataclass
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    address: str | None = None  # outside the cluster


def _template(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


def release_pods(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[Pod]:
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-settings"))
    pods = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "CronJob", "Job", "Pod"):
            continue
        template = _template(doc)
        container = template["spec"]["containers"][0]
        environment = {**settings["data"], **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}
        pods.append(Pod(doc["metadata"]["name"], NAMESPACE, template["metadata"]["labels"],
                        {"kubernetes.io/metadata.name": NAMESPACE},
                        {p["name"]: p["containerPort"] for p in container.get("ports", [])}, environment,
                        container["command"]))
    return pods


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        present, value = expression["key"] in labels, labels.get(expression["key"])
        operator = expression["operator"]
        if (operator == "In" and value not in expression["values"]) or \
                (operator == "NotIn" and value in expression.get("values", [])) or \
                (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return True


def _peer_matches(peer: dict[str, Any], pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        # A policy engine may or may not match pod addresses with an ipBlock: count it as matching.
        address = ipaddress.ip_address(pod.address or "10.244.0.10")
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if pod.address is not None:
        return False  # outside the cluster: only an ipBlock reaches it
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], pod.namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector"), pod.labels)


def _port_matches(ports: list[dict[str, Any]] | None, server: Pod, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None or wanted == port or (isinstance(wanted, str) and server.ports.get(wanted) == port):
            return True
    return False


def _allowed(policies: list[dict[str, Any]], pod: Pod, direction: str, peer: Pod, server: Pod, port: int,
             protocol: str) -> bool:
    """Whether the policies selecting `pod` let this connection through in `direction`."""
    selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace and pod.address is None
                 and _selects(p["spec"]["podSelector"], pod.labels)
                 and direction.capitalize() in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True  # not isolated in this direction
    side = "to" if direction == "egress" else "from"
    for policy in selecting:
        for rule in policy["spec"].get(direction, []) or []:
            peers = rule.get(side)
            if (not peers or any(_peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers)) \
                    and _port_matches(rule.get("ports"), server, port, protocol):
                return True
    return False


def connects(policies: list[dict[str, Any]], client: Pod, server: Pod, port: int, protocol: str = "TCP") -> bool:
    return _allowed(policies, client, "egress", server, server, port, protocol) and \
        _allowed(policies, server, "ingress", client, server, port, protocol)


def _outside(name: str, address: str) -> Pod:
    return Pod(name, "", {}, {}, address=address)


def chart_values(values: dict[str, Any]) -> dict[str, Any]:
    """The values a render used: the chart's defaults with `values` merged in, as Helm merges them."""
    def merge(base: Any, extra: Any) -> Any:
        if isinstance(base, dict) and isinstance(extra, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in extra.items()}}
        return extra

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)


def _first_address(cidr: str) -> str:
    network = ipaddress.ip_network(cidr)
    return str(network.network_address + (1 if network.num_addresses > 1 else 0))


def _within(address: str, cidrs: list[str]) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(cidr) for cidr in cidrs)


def _service_of_url(docs: tuple[dict[str, Any], ...], url: str) -> str:
    """The component behind a service URL: the Service it names, and the pods that Service selects."""
    host, port = re.fullmatch(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == host)
    assert any(p["port"] == int(port) for p in service["spec"]["ports"]), url
    return service["spec"]["selector"][COMPONENT]


Expected = tuple[set[tuple[str, str]], set[str], set[str]]


def expected_calls(docs: tuple[dict[str, Any], ...], pods: list[Pod]) -> Expected:
    """(component -> component, components that reach Azure storage, components that reach the Kubernetes API),
    from the code's calls that happen under each workload's rendered settings."""
    calls = all_calls()
    between: set[tuple[str, str]] = set()
    azure: set[str] = set()
    kubernetes: set[str] = set()
    for pod in pods:
        component = pod.labels[COMPONENT]
        if component == "tests":
            continue
        assert pod.command == WORKLOAD_COMMANDS[component], (pod.name, pod.command)
        for call in calls:
            if call.caller != component or not happens(call, pod.environment):
                continue
            if call.callee in SERVICES:
                url = pod.environment[f"VISIONDOCK_{call.callee.upper()}_URL"]
                between.add((component, _service_of_url(docs, url)))
            elif call.callee == STORAGE:
                if pod.environment["VISIONDOCK_BLOB_BACKEND"] == "azure" or \
                        pod.environment["VISIONDOCK_DOCUMENT_BACKEND"] == "cosmos":
                    azure.add(component)
            elif call.callee == KUBERNETES_API:
                kubernetes.add(component)
    # helm test: the services its script asks.
    for doc in docs:
        if doc["kind"] == "Pod" and doc["metadata"]["labels"][COMPONENT] == "tests":
            script = "\n".join(doc["spec"]["containers"][0]["args"])
            asked = set(re.findall(r'"(annotation|registry|scoring)"', script)) | set(
                re.findall(r"-(annotation|registry|scoring):8080", script))
            between |= {("tests", service) for service in asked}
    return between, azure, kubernetes


def check_graph(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """Every way the policies differ from the calls the code makes, as sentences."""
    docs = tuple(docs)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pods = release_pods(docs)
    between, azure, kubernetes = expected_calls(docs, pods)
    np_values = chart_values(values)["networkPolicy"]
    problems = []
    for client in pods:
        a = client.labels[COMPONENT]
        for server in pods:
            b = server.labels[COMPONENT]
            for port_name, port in server.ports.items():
                wanted = port_name == "http" and (a, b) in between
                if connects(policies, client, server, port) != wanted:
                    problems.append(f"{a} -> {b}:{port_name}: the code {'calls' if wanted else 'makes no such call'}"
                                    f", the policies {'refuse' if wanted else 'allow'} it")
        dns = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"},
                  {"dns": 53})
        if not connects(policies, client, dns, 53, "UDP"):
            problems.append(f"{a} cannot resolve names")
        # Outside the cluster, Azure storage and the API server are addresses in the configured CIDRs (by default
        # anywhere, so one address stands for both): a port is open to an address iff a call needs it there.
        for address in sorted({_first_address(c) for c in np_values["azureCidrs"] + np_values["kubernetesApiCidrs"]}):
            for port in sorted({443, *np_values["kubernetesApiPorts"]}):
                wanted = (a in azure and port == 443 and _within(address, np_values["azureCidrs"])) or (
                    a in kubernetes and port in np_values["kubernetesApiPorts"]
                    and _within(address, np_values["kubernetesApiCidrs"]))
                if connects(policies, client, _outside("outside", address), port) != wanted:
                    problems.append(f"{a} -> {address}:{port} (Azure storage or the Kubernetes API): the code "
                                    f"{'calls' if wanted else 'makes no such call'}")
    # From outside the release: the ingress controller or Gateway to the public APIs, the scraper to metrics.
    merged = chart_values(values)
    gateway = merged.get("gateway", {})
    public = merged["ingress"]["enabled"] or gateway.get("enabled")
    exposed = {s for s in SERVICES if public and merged.get("hosts", {}).get(s)}
    front: Pod
    if gateway.get("enabled") and gateway.get("create"):
        fullname = next(d for d in docs if d["kind"] == "Gateway")["metadata"]["name"]
        front = Pod("gateway", NAMESPACE, {"gateway.networking.k8s.io/gateway-name": fullname},
                    {"kubernetes.io/metadata.name": NAMESPACE})
    else:
        controller = np_values["ingressController"]
        namespace = controller.get("namespaceSelector", {}).get("matchLabels", {}).get(
            "kubernetes.io/metadata.name", "ingress-nginx")
        front = Pod("ingress-controller", namespace, dict(controller.get("podSelector", {}).get("matchLabels", {})),
                    {"kubernetes.io/metadata.name": namespace})
    scraper_values = np_values.get("metricsScraper", {})
    scraper_namespace = scraper_values.get("namespaceSelector", {}).get("matchLabels", {}).get(
        "kubernetes.io/metadata.name", "monitoring")
    scraper = Pod("prometheus", scraper_namespace, dict(scraper_values.get("podSelector", {}).get("matchLabels", {})),
                  {"kubernetes.io/metadata.name": scraper_namespace})
    for server in pods:
        b = server.labels[COMPONENT]
        for port_name, port in server.ports.items():
            for client, wanted in ((front, port_name == "http" and b in exposed),
                                   (scraper, port_name == "metrics" and scraper_values.get("enabled", False))):
                if connects(policies, client, server, port) != wanted:
                    problems.append(f"{client.name} -> {b}:{port_name}: {'refused' if wanted else 'allowed'}")
    return problems


@pytest.mark.parametrize("profile", PROFILES)
def test_network_policies_allow_exactly_the_calls_the_code_makes(profile: str) -> None:
    problems = check_graph(rendered_profile(profile), profile_values(profile))
    assert not problems, "\n".join(problems)


def test_the_labeling_app_reaches_the_registry_and_scoring() -> None:
    # What the graph test found missing: the /app/registry proxy (start training, promote) and label suggestions.
    policies = [d for d in rendered_profile("aks-gpu") if d["kind"] == "NetworkPolicy"]
    pods = {p.labels[COMPONENT]: p for p in release_pods(rendered_profile("aks-gpu"))}
    assert connects(policies, pods["annotation"], pods["registry"], 8080)
    assert connects(policies, pods["annotation"], pods["scoring"], 8080)
    assert not connects(policies, pods["trainer"], pods["scoring"], 8080)


def test_captures_open_the_way_to_annotation_and_storage_and_nothing_more() -> None:
    base = profile_values("aks-gpu")
    values = {**base, "scoring": {**base["scoring"], "captureRate": 0.05}}
    docs = manifests(render(values))
    assert not check_graph(docs, values)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pods = {p.labels[COMPONENT]: p for p in release_pods(docs)}
    assert connects(policies, pods["scoring"], pods["annotation"], 8080)
    assert connects(policies, pods["scoring"], _outside("azure", AZURE_STORAGE_ADDRESS), 443)


def test_extra_rules_and_the_metrics_scraper_are_added_where_asked() -> None:
    base = profile_values("aks-cpu")
    internet = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    values = {**base, "networkPolicy": {**base.get("networkPolicy", {}), "extraEgress": {"scoring": [internet]},
                                        "metricsScraper": {"enabled": True}}}
    docs = manifests(render(values))
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pods = {p.labels[COMPONENT]: p for p in release_pods(docs)}
    website = _outside("website", "93.184.216.34")
    assert connects(policies, pods["scoring"], website, 443)
    plain = manifests(render({**base, "networkPolicy": {"metricsScraper": {"enabled": True}}}))
    plain_policies = [d for d in plain if d["kind"] == "NetworkPolicy"]
    assert not connects(plain_policies, pods["scoring"], website, 443)
    assert not check_graph(plain, {**base, "networkPolicy": {"metricsScraper": {"enabled": True}}})
    prometheus = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"},
                     {"kubernetes.io/metadata.name": "monitoring"})
    for service in SERVICES:
        assert connects(policies, prometheus, pods[service], pods[service].ports["metrics"])
        assert not connects(policies, prometheus, pods[service], 8080)
