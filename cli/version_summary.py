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


def estimate_text(metrics: dict[str, Any]) -> str | None:
    """'expected accuracy on new photos 97.9 % (95 % interval 96.6-98.7 %) from 720 images, out-of-fold'."""
    found = metrics.get("estimate")
    if not found:
        return None
    low, high = found["interval"]
    source = {"out-of-fold": "out-of-fold predictions of repeated cross-validation",
              "held-out": "held-out test images"}.get(found["source"], found["source"])
    return (f"expected {found['metric']} on new photos {percent(found['value'])} (95 % interval {percent(low)}-"
            f"{percent(high)}) from {found['images']} images ({source})")


def short_estimate(metrics: dict[str, Any]) -> str:
    """'97.9 % [96.6-98.7] n=720' for one row of a version list."""
    found = metrics.get("estimate")
    if not found:
        value = metrics.get("accuracy")
        return f"{percent(value)} (no interval)" if isinstance(value, float) else "-"
    low, high = found["interval"]
    return f"{percent(found['value'])} [{low:.1%}-{high:.1%}] n={found['images']}"


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
    else:
        verdict = "not registered (disagrees with fp32)"
    if "keeps_accuracy" in checked:
        low, high = checked["difference_interval"]
        verdict += (f": {percent(checked['accuracy_int8'])} against fp32's {percent(checked['accuracy_fp32'])} on "
                    f"{checked['judged_on']}, difference {checked['difference']:+.2%} (95 % interval {low:+.2%} to "
                    f"{high:+.2%})")
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
