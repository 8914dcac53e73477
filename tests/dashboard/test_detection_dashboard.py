"""A detector's version page in a real browser: the figures detection stores (AP@0.5 and AP@[.5:.95] per
class, box counts, precision and recall at the served threshold) with their sample sizes, one unit per
chart, the settings a detector has, and the per-class error breakdown and PR curves once a version
carries them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.trainer.job import run_training
from services.trainer.options import TrainingOptions
from tests.dashboard.conftest import Trained
from tests.dashboard.test_dashboard_page import open_page
from tests.trainer.conftest import upload_unlabeled
from tests.trainer.generated import box_scene, jpeg
from visiondock.clients import AnnotationClient
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.training]
DETECTOR = "dash-boxes"
TAGS = ("disc", "block")
NOTHING = "\u2013"  # the dash the page shows for a figure it has not got
DASH = "\u2013"  # between the ends of an interval


@pytest.fixture(scope="module")
def detector(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """Version 1: a detector the trainer made in this session (2 epochs at 64 px on 18 generated shelf-like
    scenes). Version 2: the same file and metadata with the two fields the trainer is gaining for detection,
    `metrics.errors` (per class: missed, mislocated, wrong class, background) and per-class `pr_curves` in the
    shape classifiers store, so the page is shown drawing them."""
    registry = trained.registry
    with AnnotationClient(trained.services.url("annotation"), LOCAL_DEV_API_KEY) as annotation:
        annotation.create_project(DETECTOR, "detection", tags=list(TAGS))
        rng = np.random.default_rng(8)
        scenes = [box_scene(rng) for _ in range(18)]
        created = upload_unlabeled(annotation, DETECTOR, [jpeg(image) for image, _ in scenes])
        for image, (_, regions) in zip(created, scenes, strict=True):
            annotation.set_image_regions(DETECTOR, image["id"], regions)
        cache = tmp_path_factory.mktemp("detector-cache")
        result = run_training(TrainingOptions(project=DETECTOR, cache_dir=cache, progress=False, epochs=2,
                                              input_size=64, int8=False, fp16=False), annotation, registry)
    first = registry.get_version(DETECTOR, result.version)
    onnx = tmp_path_factory.mktemp("detector-file") / "model.onnx"
    onnx.write_bytes(registry.request("GET", f"/v1/models/{DETECTOR}/versions/{result.version}/artifacts/"
                                             "model.onnx").content)
    # The shapes the trainer's detection evaluation stores (services/trainer/detection_evaluation.py).
    rows = {"disc": {"found": 3, "wrong_class": 0, "mislocated": 1, "missed": 2, "duplicate": 1, "background": 5,
                     "false_positives": 6, "boxes": 6, "confused_with": {}},
            "block": {"found": 2, "wrong_class": 1, "mislocated": 0, "missed": 1, "duplicate": 0, "background": 3,
                      "false_positives": 3, "boxes": 4, "confused_with": {"disc": 1}}}
    errors = {"per_class": rows, "total": {key: sum(row[key] for row in rows.values()) for key in
                                           ("found", "wrong_class", "mislocated", "missed", "boxes")},
              "score_threshold": 0.5, "match_iou": 0.5, "background_iou": 0.1, "image_count": 4}
    # The estimate is the test images' mAP (as stored beside it) with a bootstrap interval.
    estimate = {"map_50": {"value": round(first["metrics"]["map_50"], 4), "low": 0.0, "high": 0.45},
                "map_50_95": {"value": round(first["metrics"]["map_50_95"], 4), "low": 0.0, "high": 0.2},
                "confidence": 0.95,
                "method": "bootstrap over images", "resamples": 2000, "source": "test", "image_count": 4,
                "box_count": 10}
    curves = {"disc": {"precision": [1.0, 0.67, 0.5], "recall": [0.33, 0.67, 0.67], "threshold": [0.9, 0.5, 0.2]},
              "block": {"precision": [1.0, 0.5], "recall": [0.5, 0.5], "threshold": [0.8, 0.3]}}
    metadata = {key: first[key] for key in ("task", "labels", "project_id", "splits", "params")}
    metadata["metrics"] = {**first["metrics"], "errors": errors, "pr_curves": curves, "estimate": estimate}
    second = registry.register_version(DETECTOR, onnx, metadata)
    yield [first, registry.get_version(DETECTOR, second["version"])]


def test_a_detectors_page_shows_what_detection_measures_with_its_sample_size(
        browser: Any, trained: Trained, detector: list[dict[str, Any]], artifacts: Path) -> None:
    version = detector[0]
    metrics = version["metrics"]
    page = open_page(browser, trained, f"#/models/{DETECTOR}/versions/{version['version']}")
    for key in ("map_50", "map_50_95"):
        shown = page.locator(f".metric[data-metric={key}]")
        assert float(shown.get_attribute("data-value")) == pytest.approx(metrics[key])
        assert f"n = {metrics['test_count']} test images" in shown.inner_text()
    recall = page.locator(".metric[data-metric=recall]").inner_text()
    assert f"n = {metrics['box_count']} boxes" in recall and "95 % interval" in recall  # few boxes: an interval
    assert f"Measured on {metrics['test_count']} test images" in page.locator("#sample-caveat").inner_text()

    # Per class: AP@0.5, AP@[.5:.95] and the true boxes, as stored; never a dash where a number is stored.
    for label, row in metrics["per_class"].items():
        line = page.locator(f"#per-class tr[data-class={label}]")
        for key in ("ap_50", "ap_50_95", "recall"):
            cell = line.locator(f"td[data-metric={key}]")
            if row[key] is None:
                assert cell.inner_text().startswith(NOTHING)
            else:
                assert float(cell.get_attribute("data-value")) == pytest.approx(row[key])
                assert cell.inner_text().split("\n")[0] == f"{row[key]:.3f}"
        assert line.locator("td[data-metric=box_count]").inner_text() == str(row["box_count"])
    assert page.locator("#per-class thead").inner_text().split()[:3] == ["class", "AP@0.5", "AP@[.5:.95]"]

    # No confusion matrix for boxes: the error breakdown's card instead, drawn when the trainer stored one
    # (the next test draws stored ones in detail), said to be missing otherwise; the PR curves likewise.
    assert page.locator("#confusion").count() == 0
    assert page.locator("#errors-missing").count() == (0 if "errors" in metrics else 1)
    assert page.locator("#error-table").count() == (1 if "errors" in metrics else 0)
    assert page.locator("#pr-curves-missing").count() == (0 if "pr_curves" in metrics else 1)

    # One unit per chart: seconds on their own axis, never beside mAP (0 to 1) or the losses.
    curves = page.locator("#training-curves")
    assert curves.locator(".curves[data-unit=seconds] path[data-series=seconds]").count() == 1
    # Validation curves only where a validation split was kept (30 images or more; this project is smaller).
    validated = bool(metrics.get("validation_count"))
    assert curves.locator(".curves[data-unit=fraction] path[data-series=val_map_50]").count() == int(validated)
    for unit in ("fraction", "loss"):
        assert curves.locator(f".curves[data-unit={unit}] [data-series*=seconds]").count() == 0
    assert curves.locator(".curves[data-unit=loss] path[data-series=train_ctr]").count() == 1
    words = curves.inner_text()
    assert "centre loss (training)" in words and ("validation mAP@0.5" in words) == validated
    assert not re.search(r"\b(train|val)_[a-z0-9_]+", words)  # the stored keys stay out of sight

    # The settings a detector has: no classification head; its input size, epochs and score threshold.
    settings = {row.get_attribute("data-setting") for row in page.locator("#settings tr[data-setting]").all()}
    assert "head" not in settings and "weight decay" not in settings
    assert {"detector", "input size (pixels)", "epochs", "batch size"} <= settings
    assert page.locator("#settings tr[data-setting='input size (pixels)'] td").last.inner_text() == "64"
    assert page.locator("#thresholds tr[data-threshold=score]").count() == 1
    note = page.locator("#threshold-note").inner_text()
    stored_note = metrics.get("threshold_selection", {}).get("note")
    if stored_note:  # too few images to keep a validation split: the default threshold, said so
        assert note == stored_note
    else:
        assert f"chosen on {metrics['validation_count']} validation images" in note and "score cut-off" in note
    assert page.errors == [] and page.outside == []
    page.screenshot(path=str(artifacts / "version-detection.png"), full_page=True)
    page.close()


def test_the_error_breakdown_and_detection_pr_curves_show_once_stored(
        browser: Any, trained: Trained, detector: list[dict[str, Any]], artifacts: Path) -> None:
    version = detector[1]
    metrics = version["metrics"]
    page = open_page(browser, trained, f"#/models/{DETECTOR}/versions/{version['version']}")
    for label, row in metrics["errors"]["per_class"].items():
        for kind in ("missed", "mislocated", "wrong_class", "background"):
            cell = page.locator(f"#error-table tr[data-class={label}] td[data-error={kind}]")
            assert cell.inner_text() == str(row[kind])
            bar = page.locator(f"#errors rect[data-series={kind}][data-category={label}]")
            assert float(bar.get_attribute("data-value")) == row[kind]
        assert page.locator(f"#error-table tr[data-class={label}] td[data-error=boxes]").inner_text() == str(
            row["boxes"])
    assert page.locator("#errors").inner_text().count("boxes") >= 1  # the axis says what it counts
    assert "(score ≥ 0.50) on 4 test images" in page.locator("#errors").inner_text()
    # The expected mAP on new photos, each with its bootstrap interval and the images and boxes behind it.
    for key, low, high in (("map_50", "0.000", "0.450"), ("map_50_95", "0.000", "0.200")):
        shown = page.locator(f"#estimate .metric[data-estimate={key}]").inner_text()
        assert f"95 % interval {low}{DASH}{high}" in shown and "n = 4 images with 10 boxes" in shown, shown
    # The headline mAPs are the same measurements: they carry the intervals.
    assert page.locator(".metric[data-metric=map_50] .interval").inner_text() == f" · 95 % interval 0.000{DASH}0.450"
    assert page.locator(".metric[data-metric=map_50_95] .interval").inner_text() == f" · 95 % interval 0.000{DASH}0.200"
    legend = {item.get_attribute("data-series"): item for item in page.locator("#pr-curves .legend-item").all()}
    assert set(legend) == set(metrics["pr_curves"])
    for label, item in legend.items():
        ap = metrics["per_class"][label]["ap_50"]
        assert (f"AP@0.5 {ap:.3f}" if ap is not None else f"AP@0.5 {NOTHING}") in item.inner_text()
    assert page.locator("#pr-curves path[data-series]").count() == len(metrics["pr_curves"])
    page.screenshot(path=str(artifacts / "version-detection-errors.png"), full_page=True)

    # Two detector versions side by side compare AP@0.5 and AP@[.5:.95] per class, and F1 only where stored
    # (the trainer stores it at the served threshold), never an empty column.
    page.goto(f"{trained.url}#/models/{DETECTOR}/compare/{detector[0]['version']}/{version['version']}")
    page.wait_for_function("want => document.body.dataset.loaded === want",
                           arg=f"#/models/{DETECTOR}/compare/{detector[0]['version']}/{version['version']}")
    header = page.locator("#compare-per-class thead").inner_text()
    assert "AP@0.5" in header and "AP@[.5:.95]" in header
    assert ("F1" in header) == any(row.get("f1") is not None for row in metrics["per_class"].values())
    assert page.errors == []
    page.close()
