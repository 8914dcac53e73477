"""The dashboard page in a real browser: it asks for the key, and every chart and table shows the
numbers the registry's API holds for the versions trained in this session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import MODEL, Trained
from tests.support.browser import offline_page
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.training]


def open_page(browser: Any, trained: Trained, route: str = "#/") -> Any:
    """The dashboard at `route` after typing the key; it may reach only the registry, so every chart
    drawn shows the page needs nothing from the internet (`page.outside` lists what it asked for)."""
    outside: list[str] = []
    page = offline_page(browser, trained.url, outside, height=1000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.outside = outside
    page.goto(f"{trained.url}{route}")
    page.fill("#api-key", LOCAL_DEV_API_KEY)
    page.click("#api-key-form button[type=submit]")
    wait_loaded(page, route)
    return page


def wait_loaded(page: Any, route: str) -> None:
    """Waits for the page to say `route` is drawn, or that it failed; a failure names what the page
    showed and any script error, which are the usual reasons."""
    page.wait_for_function("want => [want, 'error'].includes(document.body.dataset.loaded)", arg=route)
    if page.evaluate("document.body.dataset.loaded") == "error":
        shown = page.locator("[role=alert]").all_inner_texts()
        raise AssertionError(f"{route} failed to draw: {shown}; page errors: {getattr(page, 'errors', [])}")


def test_a_wrong_key_is_refused_and_the_models_list_shows_aliases_and_metrics(
        browser: Any, trained: Trained, artifacts: Path) -> None:
    page = browser.new_page()
    page.goto(trained.url)
    page.fill("#api-key", "not-the-key")
    page.click("#api-key-form button[type=submit]")
    page.wait_for_selector("#key-error:has-text('refused')")
    page.fill("#api-key", LOCAL_DEV_API_KEY)
    page.click("#api-key-form button[type=submit]")
    wait_loaded(page, "#/")
    first = trained.versions[0]
    row = page.locator(f"#models tr[data-model={MODEL}]")
    assert "production → v1" in row.inner_text() and "staging → v2" in row.inner_text()
    # The headline shown is the production version's.
    assert float(row.locator("td[data-metric=accuracy]").inner_text()) == pytest.approx(
        first["metrics"]["accuracy"], abs=5e-4)
    page.screenshot(path=str(artifacts / "models.png"), full_page=True)
    page.close()


def test_a_version_page_draws_its_metrics_curves_and_data(browser: Any, trained: Trained, artifacts: Path) -> None:
    version = trained.versions[1]
    metrics = version["metrics"]
    page = open_page(browser, trained, f"#/models/{MODEL}/versions/{version['version']}")
    # PR curves: one line per class, the legend's AP is the stored AP.
    legend = {item.get_attribute("data-series"): item for item in page.locator("#pr-curves .legend-item").all()}
    assert set(legend) == set(metrics["pr_curves"])
    for label, item in legend.items():
        assert float(item.get_attribute("data-value")) == pytest.approx(metrics["per_class"][label]["ap"])
        assert f"AP {metrics['per_class'][label]['ap']:.3f}" in item.inner_text()
    assert page.locator("#pr-curves path[data-series]").count() == len(metrics["pr_curves"])
    # Per-class table and bars.
    for label, row in metrics["per_class"].items():
        cell = page.locator(f"#per-class tr[data-class={label}] td[data-metric=f1]")
        assert float(cell.get_attribute("data-value")) == pytest.approx(row["f1"])
        bar = page.locator(f"rect[data-series=recall][data-category={label}]")
        assert float(bar.get_attribute("data-value")) == pytest.approx(row["recall"])
    # Confusion matrix: every count where the API has it.
    matrix = metrics["confusion_matrix"]
    for i, truth in enumerate(matrix["labels"]):
        for j, predicted in enumerate(matrix["labels"]):
            cell = page.locator(f"#confusion td[data-true={truth}][data-predicted={predicted}]")
            assert int(cell.inner_text()) == matrix["matrix"][i][j]
    # Training curves: one dot per epoch with the stored value.
    history = metrics["history"]
    dots = page.locator("#training-curves circle[data-series=val_loss]")
    assert dots.count() == len([row for row in history if "val_loss" in row])
    assert float(dots.last.get_attribute("data-value")) == pytest.approx(history[-1]["val_loss"])
    # Thresholds and data.
    assert page.locator("#thresholds").count() == 1
    lineage = trained.registry.get_json(f"/v1/models/{MODEL}/versions/{version['version']}/lineage")
    assert page.locator("#content-hash").inner_text() == lineage["dataset"]["content_hash"]
    for part, ids in version["splits"].items():
        assert page.locator(f"#splits tr[data-split={part}] td.num").inner_text() == str(len(ids))
    assert "3 relabeled" in page.locator("#data").inner_text()
    # How it was trained: the chosen backbone and head, and every candidate with its cross-validated accuracy.
    params = version["params"]
    assert page.locator("#settings tr[data-setting=backbone] td").last.inner_text() == params["backbone"]
    assert page.locator("#settings tr[data-setting=head] td").last.inner_text() == params["head"]
    for setting, variant in (("INT8 variant (CPUs)", "int8"), ("fp16 variant (GPUs)", "fp16")):
        shown = page.locator(f'#settings tr[data-setting="{setting}"] td').last.inner_text()
        assert shown == ("registered" if metrics[variant]["registered"] else "refused (answers differ from fp32)")
    candidates = params["selection"]["candidates"]
    assert page.locator("#selection tbody tr").count() == len(candidates) >= 2
    for candidate in candidates:
        row = page.locator(f'#selection tr[data-name="{candidate["name"]}"]')
        assert row.locator("td.num").nth(1).inner_text().startswith(f"{candidate['score'] * 100:.1f} %")
        assert row.get_attribute("data-chosen") == str(candidate["chosen"]).lower()
    assert page.locator("#selection tr[data-chosen=true]").count() == 1
    assert page.errors == [] and page.outside == []
    page.screenshot(path=str(artifacts / "version.png"), full_page=True)
    page.close()


def test_two_versions_side_by_side_mark_better_and_worse(browser: Any, trained: Trained, artifacts: Path) -> None:
    first, second = trained.versions
    compared = trained.registry.get_json(f"/v1/models/{MODEL}/compare",
                                         params={"a": first["version"], "b": second["version"]})
    page = open_page(browser, trained, f"#/models/{MODEL}")
    page.select_option("#a", str(first["version"]))
    page.select_option("#b", str(second["version"]))
    page.click("#compare-form button")
    wait_loaded(page, f"#/models/{MODEL}/compare/{first['version']}/{second['version']}")
    for label, row in compared["per_class"].items():
        for metric_index, metric in enumerate(("precision", "recall", "f1", "ap")):
            cell = page.locator(f"#compare-per-class tr[data-class={label}] td[data-change]").nth(metric_index)
            assert cell.get_attribute("data-change") == (row[metric]["change"] or "none")
            if row[metric]["change"] in ("better", "worse"):
                assert row[metric]["change"] in (cell.get_attribute("class") or "")
    assert compared["summary"]["worse"] > 0  # the mislabeled photos cost something
    assert page.locator("#compare-per-class td.worse").count() == compared["summary"]["worse"]
    assert page.locator("#compare-per-class td.better").count() == compared["summary"]["better"]
    accuracy = page.locator("#compare-headline tr[data-metric=accuracy] td[data-change]")
    assert accuracy.get_attribute("data-change") == compared["headline"]["accuracy"]["change"]
    page.screenshot(path=str(artifacts / "compare.png"), full_page=True)
    page.close()


def test_training_runs_show_live_progress(browser: Any, trained: Trained, artifacts: Path) -> None:
    registry = trained.registry
    run = registry.create_run(MODEL, params={"mode": "advanced"})
    registry.update_run(run["id"], status="running", stage="train", epoch=3, epochs=10,
                        metrics={"loss": 0.61, "val_accuracy": 0.72})
    page = open_page(browser, trained, "#/runs")
    row = page.locator(f"#runs tr[data-run={run['id']}]")
    # In words: the state as a sentence, the figures by their names, not the stored keys.
    assert "Running: training, epoch 3 of 10" in row.inner_text() and "epoch 3 of 10" in row.inner_text()
    # The page follows the run on its own.
    registry.update_run(run["id"], epoch=7, metrics={"loss": 0.42, "val_accuracy": 0.81})
    page.wait_for_selector(f"#runs tr[data-run={run['id']}]:has-text('epoch 7 of 10')", timeout=10_000)
    assert "validation accuracy 0.810" in row.inner_text() and "val_accuracy" not in row.inner_text()
    page.screenshot(path=str(artifacts / "runs.png"), full_page=True)
    registry.cancel_run(run["id"], reason="test over")
    page.wait_for_selector(f"#runs tr[data-run={run['id']}][data-status=cancelled]", timeout=10_000)
    page.close()
