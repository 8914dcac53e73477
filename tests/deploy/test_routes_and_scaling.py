"""What reaches the public APIs and how the scoring pods scale: the Ingress or Gateway routes carry each API's
largest request (read from the services' own routes) within a time it can take, over TLS in every AKS
profile; the custom resources (Gateway API, PodMonitor, KEDA) have what their controllers read; GPU scoring
scales on more than CPU."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tests.deploy.chart import NAMESPACE, find, manifests, profile_values, render, rendered_profile
from tests.deploy.test_network_graph import chart_values

pytestmark = pytest.mark.chart

SERVICES = ("annotation", "registry", "scoring")
AKS_PROFILES = ("aks-gpu", "aks-cpu")
MIB = 1024 * 1024
# The slowest client link the routes' timeouts allow for the largest request: 4 MiB/s (about 34 Mbit/s).
CLIENT_BYTES_PER_SECOND = 4 * MIB


@cache
def largest_request(service: str, home: Path) -> int:
    """The largest body any route of the service accepts, as its request guard reads the routes' limits."""
    from services.annotation.app import create_app as annotation
    from services.registry.app import create_app as registry
    from services.scoring.app import create_app as scoring
    from services.scoring.settings import ScoringSettings
    from visiondock.limits import DEFAULT_BODY_LIMIT, _limit_of
    from visiondock.settings import Settings

    settings_class = ScoringSettings if service == "scoring" else Settings
    app = {"annotation": annotation, "registry": registry, "scoring": scoring}[service](
        settings_class(home=home / service, log_format="text", log_level="ERROR"))
    with TestClient(app):  # limits read from the app's state need it started
        limits = [_limit_of(context) for context in iter_route_contexts(app.routes)]
        return max(limit.of(app) if limit else DEFAULT_BODY_LIMIT for limit in limits)


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    home = tmp_path_factory.mktemp("limits")
    return {service: largest_request(service, home) for service in SERVICES}


def _ingress_profile(profile: str, **tls: str) -> dict[str, Any]:
    values = profile_values(profile)
    return {**values, "gateway": {"enabled": False}, "tls": tls or values["tls"],
            "ingress": {"enabled": True, "className": "webapprouting.kubernetes.azure.com"}}


@pytest.mark.parametrize("profile", AKS_PROFILES)
def test_each_public_api_lets_its_largest_request_through(profile: str, limits: dict[str, int]) -> None:
    routes = chart_values(profile_values(profile))["routes"]
    for service in SERVICES:
        assert routes[service]["maxBodyMiB"] * MIB >= limits[service], service
        assert routes[service]["timeoutSeconds"] >= max(60, limits[service] / CLIENT_BYTES_PER_SECOND), service
    # The Gateway API routes (the AKS profiles' default): a timeout per route, no body limit of their own.
    for service in SERVICES:
        route = find(rendered_profile(profile), "HTTPRoute", f"vd-visiondock-{service}")["spec"]["rules"][0]
        assert route["timeouts"]["request"] == f"{routes[service]['timeoutSeconds']}s"
        assert route["backendRefs"] == [{"name": f"vd-visiondock-{service}", "port": 8080}]
    # The Ingress (NGINX): the controller's 1 MiB and 60 s defaults replaced, bodies streamed, not buffered.
    docs = manifests(render(_ingress_profile(profile)))
    for service in SERVICES:
        annotations = find(docs, "Ingress", f"vd-visiondock-{service}")["metadata"]["annotations"]
        size = re.fullmatch(r"(\d+)m", annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
        assert size and int(size.group(1)) * MIB >= limits[service], service
        for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
            assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) == routes[service]["timeoutSeconds"]
        assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"


@pytest.mark.parametrize("profile", AKS_PROFILES)
def test_every_aks_profile_serves_its_hosts_over_tls(profile: str) -> None:
    docs = rendered_profile(profile)
    hosts = profile_values(profile)["hosts"]
    gateway = find(docs, "Gateway", "vd-visiondock")
    assert gateway["spec"]["gatewayClassName"] == "approuting-istio"
    assert gateway["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    listeners = {listener["hostname"]: listener for listener in gateway["spec"]["listeners"] if "hostname" in listener}
    assert set(listeners) == set(hosts.values())
    for listener in listeners.values():
        assert listener["protocol"] == "HTTPS" and listener["port"] == 443
        assert listener["tls"]["mode"] == "Terminate" and listener["tls"]["certificateRefs"]
    # Port 80 only redirects to HTTPS (cert-manager's HTTP-01 challenge routes match more closely).
    (plain,) = [listener for listener in gateway["spec"]["listeners"] if "hostname" not in listener]
    assert (plain["protocol"], plain["port"]) == ("HTTP", 80)
    redirect = find(docs, "HTTPRoute", "vd-visiondock-https-redirect")["spec"]
    assert redirect["parentRefs"] == [{"name": "vd-visiondock", "sectionName": "http"}]
    assert sorted(redirect["hostnames"]) == sorted(hosts.values())
    assert redirect["rules"] == [{"filters": [{"type": "RequestRedirect",
                                               "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]
    for service, host in hosts.items():
        route = find(docs, "HTTPRoute", f"vd-visiondock-{service}")["spec"]
        assert route["hostnames"] == [host]
        assert route["parentRefs"] == [{"name": "vd-visiondock", "sectionName": service}]
    assert not [d for d in docs if d["kind"] == "Ingress"]


@pytest.mark.parametrize(("tls", "secret", "annotation"), [
    ({"certManagerClusterIssuer": "letsencrypt"}, "vd-visiondock-{service}-tls", "cert-manager.io/cluster-issuer"),
    ({"keyVaultCertificateUri": "https://visiondock-kv.vault.azure.net/certificates/visiondock"},
     "keyvault-vd-visiondock-{service}", "kubernetes.azure.com/tls-cert-keyvault-uri"),
])
def test_the_ingress_option_serves_tls_too(tls: dict[str, str], secret: str, annotation: str) -> None:
    docs = manifests(render(_ingress_profile("aks-cpu", **tls)))
    for service in SERVICES:
        ingress = find(docs, "Ingress", f"vd-visiondock-{service}")
        host = ingress["spec"]["rules"][0]["host"]
        assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": secret.format(service=service)}]
        assert ingress["metadata"]["annotations"][annotation] == next(iter(tls.values()))
        assert ingress["spec"]["ingressClassName"] == "webapprouting.kubernetes.azure.com"


def test_a_host_left_empty_stays_private() -> None:
    values = profile_values("aks-gpu")
    docs = manifests(render({**values, "hosts": {**values["hosts"], "registry": ""}}))
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "HTTPRoute"} == {
        "vd-visiondock-annotation", "vd-visiondock-scoring", "vd-visiondock-https-redirect"}


def test_gpu_scoring_scales_on_its_queue_as_well_as_cpu() -> None:
    hpa = find(rendered_profile("aks-gpu"), "HorizontalPodAutoscaler", "vd-visiondock-scoring")["spec"]
    kinds = {metric["type"]: metric for metric in hpa["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "visiondock_scoring_queue_depth"
    # KEDA instead: a ScaledObject on the queue depth from Prometheus (and CPU), and no HPA of the chart's own.
    base = profile_values("aks-gpu")
    values = {**base, "scoring": {**base["scoring"], "keda": {"enabled": True}}}
    docs = manifests(render(values))
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    scaled = find(docs, "ScaledObject", "vd-visiondock-scoring")["spec"]
    assert scaled["scaleTargetRef"] == {"name": "vd-visiondock-scoring"}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 6)
    prometheus = next(t for t in scaled["triggers"] if t["type"] == "prometheus")["metadata"]
    assert prometheus["query"] == (f'sum(visiondock_scoring_queue_depth{{namespace="{NAMESPACE}",'
                                   'pod=~"vd-visiondock-scoring-.+"})')
    assert float(prometheus["threshold"]) > 0
    assert {t["type"] for t in scaled["triggers"]} == {"prometheus", "cpu"}


def test_a_pod_monitor_scrapes_the_metrics_port_no_service_exposes() -> None:
    values = {**profile_values("aks-gpu"), "metrics": {"podMonitor": {"enabled": True,
                                                                       "apiVersion": "azmonitoring.coreos.com/v1"}}}
    docs = manifests(render(values))
    monitor = find(docs, "PodMonitor", "vd-visiondock")
    assert monitor["apiVersion"] == "azmonitoring.coreos.com/v1"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    for service in SERVICES:
        deployment = find(docs, "Deployment", f"vd-visiondock-{service}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        settings = find(docs, "ConfigMap", "vd-visiondock-settings")["data"]
        assert ports["metrics"] == int(settings["VISIONDOCK_METRICS_PORT"]) != ports["http"]
        assert "VISIONDOCK_METRICS_PORT" not in env
        selector = monitor["spec"]["selector"]["matchExpressions"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(labels[e["key"]] in e["values"] for e in selector)
        service_ports = find(docs, "Service", f"vd-visiondock-{service}")["spec"]["ports"]
        assert [p["targetPort"] for p in service_ports] == ["http"]


def _settings_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    return next(doc["data"] for doc in docs if doc["kind"] == "ConfigMap" and "VISIONDOCK_SCORING_URL" in
                doc.get("data", {}))


def test_the_console_shows_callers_the_scoring_hosts_address() -> None:
    # The "Use this model" code names where callers reach scoring: its public host, not the in-cluster URL.
    values = profile_values("aks-cpu")
    settings = _settings_map(manifests(render(values)))
    assert settings["VISIONDOCK_SCORING_PUBLIC_URL"] == f"https://{values['hosts']['scoring']}"
    assert settings["VISIONDOCK_SCORING_URL"].startswith("http://")
    private = _settings_map(manifests(render({**values, "hosts": {**values["hosts"], "scoring": ""}})))
    assert "VISIONDOCK_SCORING_PUBLIC_URL" not in private
