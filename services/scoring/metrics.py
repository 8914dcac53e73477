"""The scoring service's own Prometheus metrics, in the app's registry.

Requests by route and status, and their latency, come from the shared middleware
(`visiondock_http_*`); these add what happens inside a prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256)
STAGES = ("decode", "preprocess", "queue", "inference", "postprocess")


class ScoringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stage_seconds = Histogram(
            "visiondock_scoring_stage_seconds",
            "Time per image in each stage: decode, preprocess, queue (waiting for a batch), inference "
            "(the batch's run), postprocess.",
            ["stage"], buckets=STAGE_BUCKETS, registry=registry)
        # Each stage's series, looked up once: every prediction observes all five.
        self.stage = {stage: self.stage_seconds.labels(stage=stage) for stage in STAGES}
        self.batch_size = Histogram("visiondock_scoring_batch_size", "Images per ONNX Runtime run.",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.queue_depth = Gauge("visiondock_scoring_queue_depth", "Requests waiting for a batch now.",
                                 registry=registry)
        self.in_progress = Gauge("visiondock_scoring_requests_in_progress",
                                 "Images admitted and not yet answered (decode, queue, inference).",
                                 registry=registry)
        self.rejected = Counter("visiondock_scoring_rejected_total",
                                "Requests refused without a prediction: queue_full (503) or timeout (504).",
                                ["reason"], registry=registry)
        self.predictions = Counter("visiondock_scoring_predictions_total",
                                   "Labels predicted (top label, present tags, or each detected box).",
                                   ["model", "version", "label"], registry=registry)
        self.model_info = Gauge("visiondock_scoring_model_info",
                                "The version each served model serves (value 1); `slot` is its alias, or "
                                "`<model>@<alias>` beside the default model.",
                                ["slot", "model", "version", "variant", "provider", "sha256"], registry=registry)
        self.registry_up = Gauge("visiondock_scoring_registry_reachable",
                                 "1 when the last check of the served model's alias reached the registry.", ["slot"],
                                 registry=registry)
        self.check_errors = Counter("visiondock_scoring_model_check_errors_total",
                                    "Failed checks or loads of a served model.", ["slot"], registry=registry)
        self.last_check = Gauge("visiondock_scoring_model_last_check_timestamp_seconds",
                                "When the served model's alias was last read successfully.", ["slot"],
                                registry=registry)
        self.swaps = Counter("visiondock_scoring_model_swaps_total", "Model versions swapped in.", ["slot"],
                             registry=registry)
        self.unloads = Counter("visiondock_scoring_model_unloads_total",
                               "Models unloaded to stay within VISIONDOCK_SCORING_MAX_LOADED_MODELS.",
                               registry=registry)
        self.captures = Counter("visiondock_scoring_captures_total",
                                "Captured predictions by outcome: queued, dropped (queue full), stored, "
                                "store_failed, sent (to the review queue), send_failed, no_project.",
                                ["outcome"], registry=registry)
        self.drift_psi = Gauge("visiondock_scoring_drift_psi",
                               "Population stability index of the last predictions against the version's test "
                               "set: kind=confidence (top confidence) or label_mix (predicted labels).",
                               ["model", "version", "kind"], registry=registry)
        self.drift_flagged = Gauge("visiondock_scoring_drift_flagged",
                                   "1 when a drift PSI of the version is at or above the threshold.",
                                   ["model", "version"], registry=registry)
        self._shown: dict[str, tuple[str, ...]] = {}
        # Each (model, version, label)'s series, looked up once: `labels()` validates and locks on every call.
        self._predicted: dict[tuple[str, int | str, str], Any] = {}

    def predicted(self, model: str, version: int | str, label: str) -> None:
        """Count one predicted label."""
        series = self._predicted.get((model, version, label))
        if series is None:
            series = self.predictions.labels(model=model, version=str(version), label=label)
            self._predicted[(model, version, label)] = series
        series.inc()

    def set_queue_depth_source(self, source: Callable[[], float]) -> None:
        self.queue_depth.set_function(source)

    def show_model(self, served: str, labels: dict[str, str] | None) -> None:
        """Replace the info series of a served model (by its metrics label) with the new session's (or none)."""
        previous = self._shown.pop(served, None)
        if previous is not None:
            self.model_info.remove(*previous)
        if labels is not None:
            values = (served, labels["model"], labels["version"], labels["variant"], labels["provider"],
                      labels["sha256"])
            self.model_info.labels(*values).set(1)
            self._shown[served] = values
