"""Production behaviour: the scoring service's drift gauges and the registry's report of captured
predictions agree, and a label mix unlike the test set's is flagged, on the page too."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import MODEL, Trained
from tests.dashboard.test_dashboard_page import open_page
from tests.trainer.generated import shape_images
from visiondock.clients import ScoringClient
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.training]


def gauge(metrics: str, name: str, **labels: str) -> float | None:
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            return float(match.group(2))
    return None


def wait_for(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.3)
    raise AssertionError("timed out waiting")


def test_only_circles_in_production_is_flagged_as_label_mix_drift(browser: Any, trained: Trained,
                                                                   artifacts: Path) -> None:
    first = trained.versions[0]
    baseline = first["metrics"]["prediction_baseline"]
    assert sum(baseline["confidence_counts"]) == baseline["count"] == first["metrics"]["test_count"]
    with ScoringClient(trained.services.url("scoring"), LOCAL_DEV_API_KEY) as scoring:
        wait_for(lambda: scoring.is_ready())
        for _, image in shape_images(("circle",), 30, seed=31):
            assert scoring.predict(image)["version"] == first["version"]
        metrics = scoring.request("GET", "/metrics").text
    report = wait_for(lambda: (r := trained.registry.get_json(f"/v1/models/{MODEL}/production"))["captured"] >= 30
                      and r)
    assert report["captured"] == 30 and sum(report["requests"]) == 30
    version = report["versions"][0]
    assert version["version"] == first["version"] and version["baseline"] == baseline
    overall = version["overall"]
    assert overall["count"] == 30 and overall["flagged"] and overall["level_label_mix"] == "drifted"
    assert sum(report["predictions_per_label"]["circle"]) == overall["label_counts"]["circle"]

    # The scoring service saw the same 30 predictions: its gauges say the same.
    for kind, key in (("label_mix", "psi_label_mix"), ("confidence", "psi_confidence")):
        value = gauge(metrics, "visiondock_scoring_drift_psi", model=MODEL, version=str(first["version"]), kind=kind)
        assert value == pytest.approx(overall[key], rel=1e-6), kind
    assert gauge(metrics, "visiondock_scoring_drift_flagged", model=MODEL, version=str(first["version"])) == 1.0

    page = open_page(browser, trained, f"#/models/{MODEL}")
    row = page.locator(f"#drift tr[data-version='{first['version']}']")
    assert row.get_attribute("data-flagged") == "true" and "drift" in row.inner_text()
    cell = row.locator("td[data-level]").nth(1)
    assert float(cell.get_attribute("data-value")) == pytest.approx(overall["psi_label_mix"])
    assert cell.get_attribute("data-level") == "drifted"
    circle = page.locator("#production .legend-item[data-series=circle]")
    assert circle.get_attribute("data-value") == str(overall["label_counts"]["circle"])
    assert page.locator("#production .legend-item[data-series='captured requests']").get_attribute("data-value") == "30"
    assert page.locator("#confidence-vs-baseline rect[data-series='test set']").count() > 0
    page.locator("#production").screenshot(path=str(artifacts / "production.png"))
    page.screenshot(path=str(artifacts / "model.png"), full_page=True)
    page.close()
