"""How a model behaves in production, from the predictions the scoring service captured.

The scoring service stores a summary of each captured prediction in the shared document store
(`visiondock.captures`: the `captures` collection, partition = the model); a report reads the
newest `MAX_CAPTURES` of the model's summaries in its time range, one query, never a blob
listing. They are grouped by version and time window, and each group's confidence histogram
and label mix is compared with the version's test-set baseline by PSI (`visiondock.drift`).

Captures are a sample (`VISIONDOCK_SCORING_CAPTURE_RATE`), so counts here are captured
predictions; the scoring service's own gauges see every prediction.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from visiondock.captures import CAPTURES, capture_query
from visiondock.drift import EDGES, drift_report
from visiondock.errors import NotFound

from .catalog import ModelCatalog

MAX_CAPTURES = 5000
log = logging.getLogger(__name__)


def _captures(catalog: ModelCatalog, model: str, since: datetime) -> list[dict[str, Any]]:
    found = []
    newest = catalog.documents.query_all(CAPTURES, capture_query(model, since), page_size=1000)
    for doc in itertools.islice(newest, MAX_CAPTURES):
        try:
            captured = datetime.fromisoformat(doc.data["captured_at"])
        except (ValueError, KeyError, TypeError):
            log.warning("skipping unreadable capture %s/%s", doc.partition_key, doc.id)
            continue
        found.append({**doc.data, "_at": captured if captured.tzinfo else captured.replace(tzinfo=UTC)})
    return found


def production_report(catalog: ModelCatalog, model: str, *, window_minutes: int, windows: int,
                      threshold: float, now: datetime | None = None) -> dict[str, Any]:
    catalog.get_model(model)
    now = now or datetime.now(UTC)
    width = timedelta(minutes=window_minutes)
    start = now - width * windows
    captures = _captures(catalog, model, start)
    starts = [start + width * i for i in range(windows)]

    def window_of(moment: datetime) -> int:
        return min(int((moment - start) / width), windows - 1)

    by_version: dict[int, list[dict[str, Any]]] = defaultdict(list)
    label_series: dict[str, list[int]] = defaultdict(lambda: [0] * windows)
    requests = [0] * windows
    for capture in captures:
        by_version[int(capture["version"])].append(capture)
        index = window_of(capture["_at"])
        requests[index] += 1
        for label in _labels(capture):
            label_series[label][index] += 1

    versions = []
    for version in sorted(by_version, reverse=True):
        try:
            baseline = catalog.get_version(model, version).get("metrics", {}).get("prediction_baseline")
        except NotFound:
            baseline = None  # the version was deleted since
        items = by_version[version]
        grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for capture in items:
            grouped[window_of(capture["_at"])].append(capture)
        versions.append({
            "version": version,
            "baseline": baseline,
            "overall": _report(baseline, items, threshold),
            "windows": [{"start": starts[i].isoformat(), **_report(baseline, grouped[i], threshold)}
                        for i in sorted(grouped)],
        })
    return {"model": model, "window_minutes": window_minutes, "threshold": threshold, "edges": EDGES,
            "windows": [s.isoformat() for s in starts], "captured": len(captures), "requests": requests,
            "predictions_per_label": dict(sorted(label_series.items())), "versions": versions}


def _labels(capture: dict[str, Any]) -> list[str]:
    prediction = capture.get("prediction") or {}
    if "detections" in prediction:
        return [d["label"] for d in prediction["detections"]]
    if "tags" in prediction:
        return [t["label"] for t in prediction["tags"]]
    return [prediction["label"]] if prediction.get("label") else []


def _report(baseline: dict[str, Any] | None, captures: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    confidences, labels = [], []
    for capture in captures:
        prediction = capture.get("prediction") or {}
        if isinstance(prediction.get("probability"), int | float):
            confidences.append(float(prediction["probability"]))
            if prediction.get("label"):
                labels.append(prediction["label"])
    report = drift_report(baseline, confidences, labels, threshold=threshold)
    report["label_counts"] = dict(Counter(label for capture in captures for label in _labels(capture)))
    return report
