"""`helm upgrade --install … --wait` on a new cluster (docs/deploy-aks.md, Install) returns only once every
pod is ready, before any model exists: the scoring pods, started with the settings the chart gives them,
must be ready with an empty registry and say, per request, which model they wait for."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.chart import find, manifests, profile_values, render
from tests.support.stack import running_services
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.chart]


def chart_scoring_env(values: dict) -> dict[str, str]:
    """The scoring container's own VISIONDOCK_SCORING_* settings as the chart renders them."""
    container = find(manifests(render(values)), "Deployment", "vd-visiondock-scoring")["spec"]["template"]["spec"][
        "containers"][0]
    return {e["name"]: e["value"] for e in container["env"]
            if "value" in e and e["name"].startswith("VISIONDOCK_SCORING_") and not e["name"].endswith("CACHE_DIR")}


@pytest.mark.parametrize("secondary", ["", "staging"])
def test_scoring_is_ready_on_an_empty_registry_and_names_the_model_it_waits_for(tmp_path: Path,
                                                                                  secondary: str) -> None:
    base = profile_values("aks-cpu")
    values = {**base, "scoring": {**base["scoring"], "model": {**base["scoring"]["model"],
                                                               "secondaryAlias": secondary}}}
    env = chart_scoring_env(values)
    assert env["VISIONDOCK_SCORING_MODEL"] == "flowers" and env["VISIONDOCK_SCORING_SECONDARY_ALIAS"] == secondary
    with running_services(tmp_path / "home", scoring_model="flowers", env=env) as services:
        scoring = services.url("scoring")
        deadline = time.monotonic() + 60  # far inside the chart's startup and readiness budget
        ready = httpx.get(f"{scoring}/readyz", timeout=5)
        while ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            ready = httpx.get(f"{scoring}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        answer = httpx.post(f"{scoring}/v1/predict", headers={"X-API-Key": LOCAL_DEV_API_KEY},
                            files={"file": ("x.jpg", b"\xff\xd8\xff")}, timeout=10)
        assert answer.status_code == 503 and "flowers" in answer.text and "production" in answer.text
