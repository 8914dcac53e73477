"""One training run: read the project, prepare → fit → validate → export → register, for any task.

`run_training` is what `python -m services.trainer` (the Kubernetes Job), `visiondock
train` and `visiondock demo` call. The task (`tasks/`) follows the project's type and
the run's preset; the steps here are the same for every task. Progress goes to the
registry's training-run resource (created here unless the launcher made one:
`TrainingOptions.run_id`): `running` with the stage, epoch and metrics, then `failed`
with the error, or `succeeded` when the version is registered. Nothing is registered
unless every step succeeded, the ONNX file computing what torch computes included.

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
from visiondock.lineage import training_lineage
from visiondock.modelcard import ModelCard
from visiondock.settings import Settings
from visiondock.vocabulary import FP16, INT8, MULTICLASS

from .cache_budget import claim_cache_dir, prune_after_training
from .data import ImageLoader, TrainingDataError, fetch_listing
from .options import OptionError, TrainingOptions
from .steps import RunSteps
from .tasks import RunContext, Task, task_for
from .tasks.base import PARITY_IMAGES, Fitted, Prepared, Validation

log = logging.getLogger(__name__)
# The step (and the report's timing, `<step>_s`) that makes and checks each variant file.
VARIANT_STEPS = {INT8: "quantize", FP16: "fp16"}

__all__ = ["TrainingOptions", "TrainingResult", "TrainingTerminated", "run_training"]


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
    task: str = MULTICLASS
    # Feature cache use, images without a face, the INT8 decision, timings.
    report: dict[str, Any] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # the version's parameters (with the selection table)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TrainingTerminated):
        return "terminated: the training Job was stopped (SIGTERM) before it registered a version"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted before it registered a version"
    return str(exc) if isinstance(exc, TrainingDataError | OptionError) else f"{type(exc).__name__}: {exc}"


def run_training(options: TrainingOptions, annotation: AnnotationClient, registry: RegistryClient) -> TrainingResult:
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    np.random.seed(options.seed)
    torch.set_num_threads(options.cpu_threads)
    run_id = options.run_id or registry.create_run(options.model_name, project_id=options.project,
                                                   params=options.params())["id"]
    steps = RunSteps(registry, run_id)
    steps.stage("download")
    steps.start_heartbeat()
    loader = ImageLoader(annotation, options.project, progress=options.progress)
    steps.report["skipped"] = loader.skipped
    cache_dir = options.resolved_cache_dir()
    claim_cache_dir(cache_dir)
    try:
        run = RunContext(options=options, project=fetch_listing(annotation, options.project), loader=loader,
                         steps=steps, cache_dir=cache_dir)
        task = task_for(run)
        with steps.step(task.prepare_stage):
            data = task.prepare()
        split = data.split
        log.info("training %s (%s, %s mode) on %d images, validating on %d, testing on %d", options.model_name,
                 task.name, options.mode, len(split.train), len(split.validation), len(split.test))
        with steps.step("train"):
            model = task.fit(data)
        with steps.step("evaluate"):
            validation = task.validate(data, model)
        with steps.step("refit", stage=False):
            model = task.refit(data, model) or model
        return _export_and_register(run, task, data, model, validation, registry, started)
    except BaseException as exc:
        steps.fail(describe(exc))
        raise
    finally:
        steps.stop_heartbeat()
        # This run's files are the most recently used, so they stay for the next one.
        prune_after_training(cache_dir, Settings().trainer_cache_max_gb)


def _export_and_register(run: RunContext, task: Task[Any, Any], data: Prepared, model: Fitted, validation: Validation,
                         registry: RegistryClient, started: float) -> TrainingResult:
    options, steps = run.options, run.steps
    run_id = steps.run_id
    metrics = {**validation.metrics, "history": model.history, "train_count": len(data.split.train),
               "validation_count": len(data.split.validation), "thresholds": validation.thresholds,
               # The exported model learned from every labeled image, after these metrics were measured.
               "refit": {"images": model.params["refit_images"]} if "refit_images" in model.params else False}
    variant_metrics: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="visiondock-train-") as workdir:
        with steps.step("export"):
            exported = task.export_inputs(data, model)
            version = registry.reserve_version(run_id)
            card = ModelCard(task=task.name, labels=data.labels, preprocess=exported.preprocess,
                             backbone=task.backbone, output_names=exported.output_names,
                             thresholds=validation.thresholds, model_name=options.model_name,
                             model_version=str(version), extra={**exported.card_extra, "run_id": run_id})
            onnx_path = task.export_file(data, model, exported, card, Path(workdir) / "model.onnx")
        with steps.step("parity", stage=False):
            parity = task.check_export(exported, onnx_path, card, PARITY_IMAGES)
        metrics["export_parity"] = {**parity, "checked_on": exported.check_source}
        log.info("ONNX parity on %d %s images: %s", parity.get("checked", 0), exported.check_source, parity)

        # Variant files, each registered only when it answers like the fp32 file. One that cannot be made
        # is left out with the reason: the trained model is registered all the same.
        variant_paths: dict[str, Path] = {}
        makers = {INT8: lambda path: task.int8_model(data, model, exported, onnx_path, path),
                  FP16: lambda path: task.fp16_model(onnx_path, path)}
        wanted = [variant for variant, on in ((INT8, options.int8), (FP16, options.fp16)) if on]
        for variant in wanted:
            with steps.step(VARIANT_STEPS[variant]):
                try:
                    candidate = makers[variant](Path(workdir) / f"model.{variant}.onnx")
                    agreement = task.variant_agreement(data, exported, validation, onnx_path, candidate, variant)
                except Exception as exc:  # any failure of an optional file
                    message = f"the {variant} variant could not be made ({describe(exc)}); the version has none"
                    log.warning(message)
                    steps.report.setdefault("warnings", []).append(message)
                    metrics[variant] = {"accepted": False, "registered": False, "error": describe(exc)}
                    continue
            metrics[variant] = {**agreement, "registered": agreement["accepted"]}
            log.info("%s variant %s: %s", variant, "accepted" if agreement["accepted"] else "refused", agreement)
            if agreement["accepted"]:
                variant_paths[variant] = candidate
                variant_metrics[variant] = agreement
        steps.report["seconds"] = round(time.perf_counter() - started, 3)
        metadata: dict[str, Any] = {
            "task": task.name,
            "labels": data.labels,
            "project_id": options.project,
            "metrics": metrics,
            "splits": data.split_ids(),
            "params": {**options.params(), **model.params},
            "run_id": run_id,
            "variant_metrics": variant_metrics,
            # Likely label errors (classification): kept beside the version's files, listed by
            # GET /v1/models/{model}/versions/{version}/label-issues.
            **({"label_issues": validation.label_issues} if validation.label_issues is not None else {}),
            "lineage": training_lineage(registry, options.model_name, records=data.records, splits=data.split_ids(),
                                        params=options.params(), project_id=options.project),
        }
        steps.stage("register", report=steps.report)
        registered = registry.register_version(options.model_name, onnx_path, metadata, variants=variant_paths)
    seconds = time.perf_counter() - started
    log.info("registered %s version %s in %.1f s (run %s)", options.model_name, registered["version"], seconds, run_id)
    return TrainingResult(model=options.model_name, version=int(registered["version"]), metrics=metrics,
                          skipped=list(run.loader.skipped), seconds=seconds, run_id=run_id, task=task.name,
                          report=steps.report, variants=sorted(registered.get("variants", {})),
                          params=dict(registered.get("params", {})))
