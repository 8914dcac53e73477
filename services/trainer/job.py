"""One training run: read the project, train, evaluate on held-out images, export, register.

`run_training` is what `python -m services.trainer` (the Kubernetes Job), `visiondock
train` and `visiondock demo` call. Its progress goes to the registry's training-run
resource (created here unless the launcher made one: `TrainingConfig.run_id`):
`running` with the stage, epoch and metrics, then `failed` with the error, or
`succeeded` when the version is registered. Nothing is registered unless every step
succeeded, the ONNX file computing what torch computes included.

The version number is reserved from the registry before export, so the ONNX file's
model card carries the very number the registry shows (`ModelCard.model_version`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.modelcard import ModelCard

from .config import RunContext, TrainedModel, TrainingConfig
from .data import ImageLoader, TrainingDataError, fetch_listing
from .export import check_detection_parity, check_parity, export_onnx
from .progress import RunReporter
from .quantize import quantize_int8

log = logging.getLogger(__name__)
SUPPORTED_TASKS = ("multiclass", "multilabel", "detection")
PARITY_IMAGES = 16

__all__ = ["TrainingConfig", "TrainingResult", "run_training"]


class TrainingTerminated(BaseException):
    """The Job was asked to stop (SIGTERM); raised from the signal handler."""


@dataclass
class TrainingResult:
    model: str
    version: int
    metrics: dict[str, Any]
    skipped: list[dict[str, str]]
    seconds: float
    run_id: str = ""
    task: str = "multiclass"
    # Feature cache use, images without a face, the INT8 decision, timings.
    report: dict[str, Any] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TrainingTerminated):
        return "terminated: the training Job was stopped (SIGTERM) before it registered a version"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted before it registered a version"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrainingDataError) else str(exc)


def run_training(config: TrainingConfig, annotation: AnnotationClient, registry: RegistryClient) -> TrainingResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(config.cpu_threads)
    run_id = config.run_id or registry.create_run(config.model_name, project_id=config.project,
                                                  params=config.as_params())["id"]
    reporter = RunReporter(registry, run_id)
    reporter.stage("download")
    reporter.start_heartbeat()
    loader = ImageLoader(annotation, config.project, progress=config.progress)
    report: dict[str, Any] = {"skipped": loader.skipped}
    try:
        data = fetch_listing(annotation, config.project)
        ctx = RunContext(config=config, data=data, loader=loader, reporter=reporter,
                         cache_dir=config.resolved_cache_dir(), report=report)
        trained = _train(ctx)
        return _export_and_register(ctx, trained, registry, run_id, started)
    except BaseException as exc:
        reporter.fail(describe(exc), report=report)
        raise
    finally:
        reporter.stop_heartbeat()


def _train(ctx: RunContext) -> TrainedModel:
    project_type = ctx.data.project["type"]
    if project_type not in SUPPORTED_TASKS:
        raise TrainingDataError(f"project {ctx.config.project!r} is a {project_type} project; this trainer trains "
                                f"{', '.join(SUPPORTED_TASKS)} projects")
    if ctx.config.task_preset == "face":
        if project_type != "multiclass":
            raise TrainingDataError("the face preset trains from a multiclass project: one tag per person "
                                    f"(and `unknown` for people to reject); {ctx.config.project!r} is {project_type}")
        from .classify import train_classifier

        return train_classifier(ctx, "face")
    if project_type == "detection":
        from .detect import train_detection

        return train_detection(ctx)
    from .classify import train_classifier

    return train_classifier(ctx, project_type)


def _export_and_register(ctx: RunContext, trained: TrainedModel, registry: RegistryClient, run_id: str,
                         started: float) -> TrainingResult:
    config = ctx.config
    ctx.reporter.stage("export")
    version = registry.reserve_version(run_id)
    card = ModelCard(task=trained.task, labels=trained.labels, preprocess=trained.preprocess, backbone=config.backbone,
                     output_names=trained.output_names, thresholds=trained.thresholds, model_name=config.model_name,
                     model_version=str(version), extra={**trained.extra, "run_id": run_id})
    metrics = dict(trained.metrics)
    metrics["thresholds"] = trained.thresholds
    variant_metrics: dict[str, dict[str, Any]] = {}
    timings = ctx.report.setdefault("timings", {})
    with tempfile.TemporaryDirectory(prefix="visiondock-train-") as workdir:
        step = time.perf_counter()
        onnx_path = export_onnx(trained.module, card, Path(workdir) / "model.onnx")
        timings["export_s"] = round(time.perf_counter() - step, 3)
        step = time.perf_counter()
        parity_inputs = trained.check_inputs[:PARITY_IMAGES]
        if trained.task == "detection":
            parity = check_detection_parity(trained.module, onnx_path, parity_inputs, card)
        else:
            parity = check_parity(trained.module, onnx_path, parity_inputs)
        metrics["export_parity"] = {**parity, "checked_on": trained.check_source}
        timings["parity_s"] = round(time.perf_counter() - step, 3)
        log.info("ONNX parity on %d %s images: %s", len(parity_inputs), trained.check_source, parity)

        int8_path: Path | None = None
        if config.int8:
            ctx.reporter.stage("quantize")
            step = time.perf_counter()
            candidate = quantize_int8(onnx_path, Path(workdir) / "model.int8.onnx", trained.calibration_inputs())
            agreement = trained.int8_agreement(onnx_path, candidate)
            metrics["int8"] = {**agreement, "registered": agreement["accepted"]}
            log.info("INT8 variant %s: %s", "accepted" if agreement["accepted"] else "refused", agreement)
            if agreement["accepted"]:
                int8_path = candidate
                variant_metrics["int8"] = agreement
            timings["int8_s"] = round(time.perf_counter() - step, 3)
        ctx.report["seconds"] = round(time.perf_counter() - started, 3)
        metadata = {
            "task": trained.task,
            "labels": trained.labels,
            "project_id": config.project,
            "metrics": metrics,
            "splits": trained.splits,
            "params": {**config.as_params(), **trained.params, "backbone": config.backbone},
            "run_id": run_id,
            "variant_metrics": variant_metrics,
        }
        ctx.reporter.stage("register", report=ctx.report)
        registered = registry.register_version(config.model_name, onnx_path, metadata, int8_path=int8_path)
    seconds = time.perf_counter() - started
    log.info("registered %s version %s in %.1f s (run %s)", config.model_name, registered["version"], seconds, run_id)
    return TrainingResult(model=config.model_name, version=int(registered["version"]), metrics=metrics,
                          skipped=list(ctx.loader.skipped), seconds=seconds, run_id=run_id, task=trained.task,
                          report=ctx.report, variants=sorted(registered.get("variants", {})))
