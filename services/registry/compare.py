"""Two versions of a model side by side: headline and per-class metrics with their deltas.

`b` is the candidate and `a` the reference (usually the older, or the one in production):
a positive delta means `b` is better, since every metric compared here is higher-is-better.
"""

from __future__ import annotations

from typing import Any

HEADLINE = ("accuracy", "macro_f1", "micro_f1", "mean_ap", "map_50", "map_50_95")
# Classifiers store f1 and ap per class, detectors ap_50 and ap_50_95.
PER_CLASS = ("precision", "recall", "f1", "ap", "ap_50", "ap_50_95")
# Differences below this are rounding, not a change.
TOLERANCE = 1e-6


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def delta(a: Any, b: Any) -> dict[str, Any]:
    """`a`, `b`, `b - a` and whether `b` is better, worse or the same (None when one is missing)."""
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return {"a": x, "b": y, "delta": None, "change": None}
    difference = y - x
    change = "same" if abs(difference) <= TOLERANCE else "better" if difference > 0 else "worse"
    return {"a": x, "b": y, "delta": difference, "change": change}


def compare_versions(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    metrics_a, metrics_b = a.get("metrics", {}), b.get("metrics", {})
    headline = {name: delta(metrics_a.get(name), metrics_b.get(name)) for name in HEADLINE
                if name in metrics_a or name in metrics_b}
    classes_a, classes_b = metrics_a.get("per_class", {}), metrics_b.get("per_class", {})
    labels = [*classes_a, *(label for label in classes_b if label not in classes_a)]
    per_class = {label: {name: delta(classes_a.get(label, {}).get(name), classes_b.get(label, {}).get(name))
                         for name in PER_CLASS} for label in labels}
    changes = [cell["change"] for row in per_class.values() for cell in row.values()]
    return {
        "model": b["model"],
        "a": {"version": a["version"], "created_at": a["created_at"], "task": a["task"]},
        "b": {"version": b["version"], "created_at": b["created_at"], "task": b["task"]},
        "headline": headline,
        "per_class": per_class,
        "summary": {"better": changes.count("better"), "worse": changes.count("worse"),
                    "same": changes.count("same")},
    }
