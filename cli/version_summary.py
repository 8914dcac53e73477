"""What the command line says about a version: its estimate on new photos, how it was chosen, its
INT8 verdict and the label issues its training found. Read from the version's stored metrics and
params (the registry's fields), so `visiondock train` and `visiondock models MODEL VERSION` print
the same thing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Say = Callable[[str], None]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _figure(metric: str, value: float | None) -> str:
    """Accuracy as a percentage; mAP (a detector's) as the number it is conventionally given as."""
    if value is None:
        return "-"
    return f"{value:.3f}" if metric.startswith("mAP") else percent(value)


def estimate_text(metrics: dict[str, Any]) -> str | None:
    """'expected accuracy on new photos 97.9 % (95 % interval 96.6-98.7 %) from 720 images, out-of-fold';
    for a detector its mAP@0.5 and mAP@[.5:.95] with their intervals and the boxes counted."""
    found = metrics.get("estimate")
    if not found or found.get("value") is None:
        return None
    metric = found["metric"]
    low, high = found["interval"]
    source = {"out-of-fold": "out-of-fold predictions of repeated cross-validation",
              "held-out": "held-out test images"}.get(found["source"], found["source"])
    text = (f"expected {metric} on new photos {_figure(metric, found['value'])} (95 % interval "
            f"{_figure(metric, low)}-{_figure(metric, high)})")
    coco = found.get("map_50_95")
    if coco and coco.get("value") is not None:
        text += (f", mAP@[.5:.95] {_figure(metric, coco['value'])} (95 % interval {_figure(metric, coco['low'])}-"
                 f"{_figure(metric, coco['high'])})")
    boxes = f", {found['boxes']} boxes" if "boxes" in found else ""
    return f"{text} from {found['images']} images{boxes} ({source})"


def short_estimate(metrics: dict[str, Any]) -> str:
    """'accuracy 97.9 % [96.6-98.7] n=720' (or 'mAP@0.5 0.931 [0.88-0.97] n=9') for one row of a version list."""
    found = metrics.get("estimate")
    if not found or found.get("value") is None:
        value = metrics.get("accuracy", metrics.get("map_50"))
        name = "accuracy" if "accuracy" in metrics else "mAP@0.5"
        return f"{name} {_figure(name, value)} (no interval)" if isinstance(value, float) else f"{name} -"
    metric = found["metric"]
    low, high = found["interval"]
    if metric.startswith("mAP"):
        return f"{metric} {found['value']:.3f} [{low:.3f}-{high:.3f}] n={found['images']}"
    return f"{metric} {percent(found['value'])} [{low:.1%}-{high:.1%}] n={found['images']}"


def detection_notes(metrics: dict[str, Any]) -> list[str]:
    """What a detection version's figures rest on beyond the estimate (its served threshold's choice)."""
    note = metrics.get("threshold_selection", {}).get("note")
    return [f"note: {note}"] if note else []


def print_selection(params: dict[str, Any], say: Say = print, *, limit: int | None = None) -> None:
    """The candidates compared by cross-validation, best first, the chosen one marked."""
    selection = params.get("selection") or {}
    rows = selection.get("candidates")
    if not rows:
        if selection.get("skipped"):
            say(f"  nothing was chosen: {selection['skipped']}")
        return
    say(f"  chosen by {selection['repeats']} x {selection['folds']}-fold cross-validation on {selection['images']} "
        f"images ({selection['rule']}; standard error {percent(selection['standard_error'])}):")
    say(f"    {'candidate':<32}{'cost':>6}{selection['metric'] + ' ± SE':>22}{'fold spread':>13}")
    ordered = sorted(rows, key=lambda row: -row["score"])
    for row in ordered[:limit] if limit else ordered:
        mark = "  <- chosen" if row["chosen"] else ("  (best)" if row["name"] == selection["best"] else "")
        say(f"    {row['name']:<32}{row['cost']:>6.2f}{row['score']:>14.2%} ± {row['standard_error']:.2%}"
            f"{row['spread']:>13.2%}{mark}")
    if limit and len(rows) > limit:
        say(f"    ... {len(rows) - limit} more (visiondock models MODEL VERSION shows them all)")
    for note in selection.get("notes", []):
        say(f"    note: {note}")


def variant_text(name: str, checked: dict[str, Any]) -> str:
    if checked.get("registered"):
        verdict = "registered"
    elif "error" in checked:
        verdict = f"not made: {checked['error']}"
    elif "keeps_accuracy" in checked:
        verdict = "not registered (it loses accuracy)"
    elif "map_50_difference" in checked:
        verdict = "not registered (it loses mAP@0.5)"
    else:
        verdict = "not registered (disagrees with fp32)"
    if "keeps_accuracy" in checked:
        low, high = checked["difference_interval"]
        verdict += (f": {percent(checked['accuracy_int8'])} against fp32's {percent(checked['accuracy_fp32'])} on "
                    f"{checked['judged_on']}, difference {checked['difference']:+.2%} (95 % interval {low:+.2%} to "
                    f"{high:+.2%})")
    difference = checked.get("map_50_difference")
    if difference and difference["value"] is not None:
        verdict += (f": mAP@0.5 against fp32 {difference['value']:+.3f} (95 % interval {difference['low']:+.3f} to "
                    f"{difference['high']:+.3f}) on {difference['image_count']} labeled images")
    return f"{name} variant {verdict}"


def print_checks(metrics: dict[str, Any], model: str, version: int, say: Say = print) -> None:
    """Near-duplicates and the label issues the out-of-fold predictions found."""
    duplicates = metrics.get("near_duplicates")
    if duplicates and duplicates.get("groups"):
        kept = len(duplicates.get("kept_out_of_estimate", []))
        say(f"  near-duplicates: {duplicates['images']} images in {duplicates['groups']} groups (features at cosine "
            f"≥ {duplicates['threshold']}), each kept in one fold" + (f"; {kept} test images kept out of the estimate"
                                                                      if kept else ""))
    issues = metrics.get("label_issues")
    if issues:
        say(f"  likely label errors: {issues['count']} of {issues['checked']} images (given label at out-of-fold "
            f"probability < {issues['threshold']}); list them: visiondock label-issues {model} {version}")
