"""Detection runs: annotation regions → `DetectionSample`s → the detector → held-out metrics.

The detector itself lives in `services.trainer.detection`; this module turns a
project's labeled images into samples (regions are `left, top, width, height`
fractions with a `tag`; an image labeled with no region is a negative), splits them,
and prepares what export needs. Images are decoded at no less than twice the
detector's input size (JPEG draft mode), enough detail for zoom augmentation; the
scoring service decodes at the input size, and both are then resized to it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visiondock.postprocess import decode_detections
from visiondock.preprocess import PreprocessSpec, to_tensor

from .config import RunContext, TrainedModel
from .data import ImageRecord, TrainingDataError, rarest_label_groups, region_labels, stratified_split
from .detection import EVAL_SCORE_THRESHOLD, DetectionSample, DetectorOptions, evaluate_detector, fit_detector
from .detection.metrics import ImageResult, detection_metrics
from .export import run_session, session
from .quantize import CALIBRATION_IMAGES, MAX_MAP50_DROP

log = logging.getLogger(__name__)
CHECK_IMAGES = 64


def to_sample(record: ImageRecord, image: Any, index: dict[str, int]) -> DetectionSample:
    """An annotated image with its normalized regions turned into pixel boxes of `image`."""
    width, height = image.size
    boxes = [[r["left"] * width, r["top"] * height, (r["left"] + r["width"]) * width,
              (r["top"] + r["height"]) * height] for r in record.regions]
    labels = [index[r["tag"]] for r in record.regions]
    return DetectionSample(image=image, boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                           labels=np.asarray(labels, dtype=np.int64))


def detector_options(ctx: RunContext) -> DetectorOptions:
    """The detector's defaults, with what the run asked for."""
    config = ctx.config
    asked = {"seed": config.seed, "backbone": config.backbone, "epochs": config.epochs,
             "input_size": config.detector_input_size, "batch_size": None, "learning_rate": config.learning_rate}
    names = {f.name for f in dataclasses.fields(DetectorOptions)}
    return DetectorOptions(**{k: v for k, v in asked.items() if v is not None and k in names})


def _tensors(samples: Sequence[DetectionSample], spec: PreprocessSpec) -> np.ndarray:
    if not samples:
        return np.zeros((0, 3, spec.size, spec.size), dtype=np.float32)
    return np.stack([to_tensor(s.image, spec) for s in samples])


def map50_of_session(path: Path, samples: Sequence[DetectionSample], spec: PreprocessSpec, labels: list[str],
                     nms_iou: float, threads: int) -> float | None:
    """mAP@0.5 of an exported file's detections on `samples`, decoded as the scoring service decodes them."""
    boxes, scores = run_session(session(path, threads), _tensors(samples, spec))[:2]
    results = []
    for sample, b, s in zip(samples, boxes, scores, strict=True):
        found = decode_detections(b, s, labels, width=sample.width, height=sample.height,
                                  score_threshold=EVAL_SCORE_THRESHOLD, nms_iou=nms_iou)
        results.append(ImageResult(
            width=sample.width, height=sample.height, true_boxes=sample.boxes, true_labels=sample.labels,
            boxes=np.array([[d.x1, d.y1, d.x2, d.y2] for d in found], dtype=np.float32).reshape(-1, 4),
            labels=np.array([labels.index(d.label) for d in found], dtype=np.int64),
            scores=np.array([d.score for d in found], dtype=np.float32)))
    return detection_metrics(results, labels, score_threshold=EVAL_SCORE_THRESHOLD)["map_50"]


def train_detection(ctx: RunContext) -> TrainedModel:
    config = ctx.config
    records = ctx.data.records
    labels = region_labels(records)
    index = {name: i for i, name in enumerate(labels)}
    options = detector_options(ctx)
    size = getattr(options, "input_size", None) or 512
    timings: dict[str, float] = {}

    ctx.reporter.stage("download")
    started = time.perf_counter()
    images = ctx.loader.load(records, draft_size=(2 * size, 2 * size))
    usable = [r for r in records if r.id in images]
    if not usable:
        raise TrainingDataError("none of the labeled images could be read; see the skipped images")
    labels_after = region_labels(usable)  # a skipped image may leave a tag with too few images
    if labels_after != labels:
        raise TrainingDataError(f"after skipping unreadable images, the tags {sorted(set(labels) - set(labels_after))} "
                                "have too few images")
    samples = [to_sample(r, images[r.id], index) for r in usable]
    timings["download_s"] = round(time.perf_counter() - started, 3)

    groups = rarest_label_groups([[region["tag"] for region in r.regions] for r in usable])
    split = stratified_split(groups, [r.split for r in usable], test_fraction=config.test_fraction,
                             validation_fraction=config.validation_fraction, seed=config.seed)
    if not split.test:
        raise TrainingDataError("no images left for the held-out test split; label more images")
    train = [samples[i] for i in split.train]
    validation = [samples[i] for i in split.validation]
    test = [samples[i] for i in split.test]
    log.info("training detector %s on %d images, validating on %d, testing on %d (%d tags)", config.model_name,
             len(train), len(validation), len(test), len(labels))

    ctx.reporter.stage("train")
    started = time.perf_counter()
    epochs = getattr(options, "epochs", 0)
    fitted = fit_detector(train, validation, labels, options,
                          on_epoch=lambda epoch, metrics: ctx.reporter.epoch(epoch, epochs, metrics),
                          progress=config.progress)
    timings["train_s"] = round(time.perf_counter() - started, 3)

    ctx.reporter.stage("evaluate")
    started = time.perf_counter()
    metrics = dict(evaluate_detector(fitted, test))
    metrics["history"] = fitted.history
    metrics["train_count"] = len(train)
    metrics["validation_count"] = len(validation)
    metrics["test_count"] = len(test)
    timings["evaluate_s"] = round(time.perf_counter() - started, 3)
    ctx.report["timings"] = timings

    spec = fitted.preprocess
    check_samples = (validation or test)[:CHECK_IMAGES]
    nms_iou = float(fitted.thresholds.get("nms_iou", 0.5))

    def calibration_inputs(count: int = CALIBRATION_IMAGES) -> np.ndarray:
        rng = np.random.default_rng(config.seed)
        chosen = sorted(rng.permutation(len(train))[:count].tolist())
        return _tensors([train[i] for i in chosen], spec)

    def int8_agreement(fp32_path: Path, int8_path: Path) -> dict[str, Any]:
        fp32 = map50_of_session(fp32_path, check_samples, spec, labels, nms_iou, config.cpu_threads)
        int8 = map50_of_session(int8_path, check_samples, spec, labels, nms_iou, config.cpu_threads)
        drop = (fp32 or 0.0) - (int8 or 0.0)
        return {"map_50_fp32": fp32, "map_50_int8": int8, "map_50_drop": drop, "checked": len(check_samples),
                "checked_on": "validation" if validation else "test", "accepted": drop <= MAX_MAP50_DROP,
                "max_map_50_drop": MAX_MAP50_DROP}

    return TrainedModel(
        task="detection", labels=labels, module=fitted.export_module(), preprocess=spec,
        output_names=["boxes", "scores"], thresholds={k: float(v) for k, v in fitted.thresholds.items()},
        metrics=metrics, params={**fitted.params, "mode": config.mode, "preprocess": spec.to_json()},
        splits=split.ids(usable), extra={"mode": config.mode},
        check_inputs=_tensors(check_samples, spec), check_source="validation" if validation else "test",
        calibration_inputs=calibration_inputs, int8_agreement=int8_agreement,
    )
