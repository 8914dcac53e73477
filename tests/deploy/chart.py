"""Rendering the Helm chart offline (Helm's own Go code through helm-python-sdk, no cluster), shared by
the chart tests and the training-Job launcher tests."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "visiondock"
VALUES_DIR = ROOT / "helm" / "values"
# The chart's defaults and each values file people install with.
PROFILES = ("default", "aks-gpu", "aks-cpu", "local")
RELEASE = "vd"
NAMESPACE = "visiondock"
KUBERNETES_VERSION = "1.30.0"  # the oldest the chart supports (Chart.yaml kubeVersion)
NEWEST_KUBERNETES_VERSION = "1.37.0"  # the newest kubernetes-validate has schemas for


# The one value the chart's defaults leave to the installer: where the keys come from.
DEFAULT_VALUES: dict[str, Any] = {"secrets": {"existingSecret": "visiondock-credentials"}}


def profile_values(profile: str) -> dict[str, Any]:
    if profile == "default":
        return copy.deepcopy(DEFAULT_VALUES)
    return yaml.safe_load((VALUES_DIR / f"{profile}.yaml").read_text()) or {}


def render(values: dict[str, Any], *, release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` gives them."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=release, namespace=NAMESPACE)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):  # NOTES.txt
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@cache
def rendered_profile(profile: str) -> tuple[dict[str, Any], ...]:
    return tuple(manifests(render(profile_values(profile))))


def find(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind}/{name} not rendered")
