"""Settings of the scoring service (VISIONDOCK_SCORING_*), on top of the shared ones."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import NoDecode

from visiondock.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from visiondock.settings import Settings, available_cpus

from .targets import TargetPlan, plan_targets

# Each run in flight holds a batch's activations, and 32 clients still fill four batches of 8: beyond four,
# more runners cost memory and make smaller batches (`make bench-variants` prints the resident memory).
MAX_AUTO_BATCH_RUNNERS = 4
# With VISIONDOCK_SCORING_WORKERS=0 (the default) on a CPU: one worker per this many CPUs (`resolved_workers`).
AUTO_CPUS_PER_WORKER = 4
# On CPU, bigger batches buy little speed (`make bench-variants` compares batch sizes).
DEFAULT_MAX_BATCH_SIZE = 8


class ScoringSettings(Settings):
    _target_plan: TargetPlan = PrivateAttr(default_factory=TargetPlan)

    # -- what to serve ------------------------------------------------------------------
    scoring_model: str = Field(default="", description="The registry model to serve.")
    scoring_alias: str = "production"
    scoring_version: int | None = Field(default=None, description="Pin a version instead of following the alias.")
    scoring_secondary_alias: str = Field(
        default="", description="A second alias served side by side (e.g. staging), at /v1/aliases/<alias>/...")
    scoring_models: str = Field(
        default="", description="Several models served by one process, comma-separated: NAME (follows "
                                "VISIONDOCK_SCORING_ALIAS), NAME@ALIAS, NAME:VERSION (pinned), or *@ALIAS (every "
                                "registry model that has the alias, discovered at each poll). Each is served at "
                                "/v1/models/<name>/... and /v2/models/<name>/...; the first is the default model "
                                "of /v1/predict.")
    scoring_max_loaded_models: int = Field(
        default=0, ge=0, description="At most this many served models in memory; the least recently used is "
                                     "unloaded (never the default model), and loaded again (from the disk cache) "
                                     "when asked for. 0 = no limit.")
    scoring_variant: Literal["auto", "fp32", "int8", "fp16"] = Field(  # auto, or visiondock.vocabulary's FP32, VARIANTS
        default="auto", description="Which file of the version to serve: `auto` (the variant made for this "
                                    "device when the version has one and it runs faster than fp32 here, timed "
                                    "once when the version loads: INT8 on a CPU, fp16 on a GPU; else fp32), "
                                    "`fp32`, or a registered variant, `int8` or `fp16` (fp32 with a warning when "
                                    "the version has none).")
    scoring_model_path: Path | None = Field(
        default=None, description="Serve this ONNX file instead of asking the registry (edge installs, tests).")
    scoring_poll_seconds: float = Field(default=10.0, gt=0, description="How often to re-read the alias.")
    scoring_cache_dir: Path | None = None  # downloaded model files; defaults to <home>/model-cache
    scoring_cache_keep_files: int = Field(
        default=4, ge=0, description="Model files the cache keeps beyond those served and remembered for a "
                                     "registry outage: the most recently used.")
    scoring_cache_max_gb: float = Field(
        default=3.0, gt=0, description="The model cache is pruned to stay under this many GB (10^9 bytes), "
                                       "files served and remembered excepted; the chart's cache volume is 4 GiB.")
    scoring_require_gpu: bool = Field(
        default=False, description="The service is meant to run on a GPU (the chart's GPU profile sets it): "
                                   "while a loaded model's ONNX Runtime session did not get the CUDA provider the "
                                   "service is not ready, and the log says why. False allows a CPU; the worker "
                                   "count also follows it (one worker when true).")

    # -- ONNX Runtime -------------------------------------------------------------------
    scoring_workers: int = Field(
        default=0, ge=0, description="Worker processes (uvicorn workers), each with its own model, batcher and "
                                     f"decode threads, sharing the port; 0 = one per {AUTO_CPUS_PER_WORKER} "
                                     "available CPUs (at least one), one where VISIONDOCK_SCORING_REQUIRE_GPU "
                                     "says the service runs on a GPU.")
    scoring_batch_runners: int = Field(
        default=0, ge=0, description="Batches each worker runs at once, each on its own thread; 0 = on CPU one "
                                     f"per CPU of the worker, at most {MAX_AUTO_BATCH_RUNNERS}; on a GPU one.")
    scoring_intra_op_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads per batch run; 0 = "
                                                                       "the worker's CPUs divided among its runners.")
    scoring_inter_op_threads: int = Field(default=0, ge=0)
    scoring_ort_spinning: bool = Field(
        default=False, description="Let ONNX Runtime's threads spin between batches: a little faster alone, "
                                   "slower when decoding shares the cores.")
    scoring_decode_threads: int = Field(default=2, ge=1, description="Threads decoding and preprocessing images.")

    # -- dynamic batching ---------------------------------------------------------------
    scoring_max_batch_size: int = Field(
        default=0, ge=0, le=1024,
        description="Images per batch run; 0 = 8, except for an fp32 model on a CPU, whose 8 are shared among "
                    "the batch runners (4 each with 2 runners) so that its activations do not grow "
                    "with the runners.")
    scoring_max_queue_delay_ms: float = Field(default=2.0, ge=0, description="How long the first request of a "
                                                                             "batch waits for company.")
    scoring_max_queue_size: int = Field(default=256, ge=1, description="Requests in progress before new ones "
                                                                       "get 503 with Retry-After.")
    scoring_request_timeout_seconds: float = Field(default=30.0, gt=0)

    # -- answers ------------------------------------------------------------------------
    scoring_top_k: int = Field(default=5, ge=1)
    scoring_uncertain_below: float = Field(
        default=0.5, ge=0, le=1, description="`uncertain` below this best probability, when the model card sets "
                                             "no `uncertain` threshold of its own.")

    # -- input limits -------------------------------------------------------------------
    scoring_max_body_bytes: int = DEFAULT_MAX_BYTES  # one image
    scoring_max_request_bytes: int = Field(default=64 * 1024 * 1024, description="A whole batch, skill or v2 "
                                                                                 "request.")
    scoring_max_pixels: int = DEFAULT_MAX_PIXELS
    scoring_max_batch_images: int = Field(default=64, ge=1, description="Images in one /v1/predict/batch call.")
    scoring_max_skill_records: int = Field(default=1000, ge=1)
    # Azure AI Search may send image URLs instead of bytes; fetching them is off unless enabled.
    scoring_skill_fetch_urls: bool = False
    scoring_skill_url_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts URLs may be fetched from (comma-separated); empty = any host.")
    scoring_fetch_timeout_seconds: float = Field(default=10.0, gt=0, description="Total deadline of one URL fetch.")
    scoring_skill_fetch_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Networks (CIDR, comma-separated) URLs may resolve into although they are "
                                          "private, loopback or link-local; public addresses are always allowed.")
    scoring_skill_fetch_concurrency: int = Field(default=8, ge=1, description="URL fetches in flight at once.")

    # -- prediction capture -------------------------------------------------------------
    scoring_capture_rate: float = Field(default=0.0, ge=0, le=1, description="Fraction of predictions captured "
                                                                             "for review.")
    scoring_capture_project: str = Field(default="", description="Annotation project captures go to; default: "
                                                                 "the version's project_id.")
    scoring_capture_queue_size: int = Field(default=64, ge=1)

    # -- drift --------------------------------------------------------------------------
    scoring_drift_window: int = Field(default=500, ge=20, description="Predictions per version in the sliding "
                                                                      "window the drift gauges are computed on.")

    @field_validator("scoring_variant", mode="before")
    @classmethod
    def _empty_variant_is_auto(cls, value: object) -> object:
        # The chart passes its `scoring.model.variant` value as is, and its default is empty.
        return "auto" if isinstance(value, str) and not value.strip() else value

    @field_validator("scoring_skill_url_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @field_validator("scoring_skill_fetch_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        for network in value if isinstance(value, list) else []:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @model_validator(mode="after")
    def _plan_targets(self) -> ScoringSettings:
        # Read once, here: a malformed list stops the service with the variable's name.
        self._target_plan = plan_targets(
            model=self.scoring_model, alias=self.scoring_alias, version=self.scoring_version,
            secondary_alias=self.scoring_secondary_alias, models=self.scoring_models,
            model_path=self.scoring_model_path)
        return self

    @property
    def target_plan(self) -> TargetPlan:
        """What to serve: the targets (the first is the default model) and the `*@ALIAS` rules."""
        return self._target_plan

    def resolved_workers(self, *, gpu: bool) -> int:
        """Worker processes: one event loop spends CPU on every image, so one worker cannot keep
        many cores busy; past a few workers the throughput stops growing while each worker holds its own
        copy of the model (`make bench-variants` prints images/s per worker count; the last figures are in
        docs/benchmarks.md). A GPU keeps one: a second worker would hold a second CUDA context, which
        nobody measured."""
        if self.scoring_workers:
            return self.scoring_workers
        return 1 if gpu else max(1, available_cpus() // AUTO_CPUS_PER_WORKER)

    def cpus_per_worker(self, *, gpu: bool) -> int:
        return max(1, available_cpus() // self.resolved_workers(gpu=gpu))

    def resolved_batch_runners(self, *, gpu: bool) -> int:
        # A GPU runs one batch at a time anyway; more runners would only hold more activations.
        return self.scoring_batch_runners or (1 if gpu else min(MAX_AUTO_BATCH_RUNNERS,
                                                               self.cpus_per_worker(gpu=False)))

    def resolved_max_batch_size(self, *, variant: str, gpu: bool) -> int:
        """The most images a batch of a model of this variant holds.

        An fp32 model on a CPU runs at about the same speed in batches of 4 as of 8 (two runners) and
        holds less memory; INT8 activations are a quarter the size, and smaller INT8 batches were slower
        (`make bench-variants` prints both; the last figures are in docs/benchmarks.md).
        """
        if self.scoring_max_batch_size:
            return self.scoring_max_batch_size
        if gpu or variant != "fp32":
            return DEFAULT_MAX_BATCH_SIZE
        return max(1, DEFAULT_MAX_BATCH_SIZE // self.resolved_batch_runners(gpu=False))

    def resolved_intra_op_threads(self, *, gpu: bool) -> int:
        return self.scoring_intra_op_threads or max(1, self.cpus_per_worker(gpu=gpu)
                                                    // self.resolved_batch_runners(gpu=gpu))

    @property
    def resolved_cache_dir(self) -> Path:
        return self.scoring_cache_dir or self.home / "model-cache"
