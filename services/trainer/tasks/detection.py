"""The detection task: annotation regions → `DetectionSample`s → the detector → held-out metrics.

The detector itself lives in `services.trainer.fcos`; this task turns a project's
labeled images into samples (regions are `left, top, width, height` fractions with a
`tag`; an image labeled with no region is a negative), splits them, and prepares what
export needs. Images are decoded at no less than twice the detector's input size (JPEG
draft mode), enough detail for zoom augmentation; the scoring service decodes at the
input size, and both are then resized to it.

What a version says about itself comes from images it did not learn from, and says how
much it rests on:
- a validation split only when it would hold at least MIN_VALIDATION_IMAGES images: fewer
  can neither pick an epoch nor a threshold (on 3 grocery photos the chosen epochs scored
  worse than the whole schedule), so they train instead; without one the served score
  threshold is the documented default (`DetectorOptions.score_threshold`) and the version
  says so (`metrics["threshold_selection"]`);
- on the test images: mAP with a 95 % bootstrap interval over images (`metrics["estimate"]`),
  per-class PR curves (`pr_curves`) and the error breakdown (`errors`),
  `detection_evaluation.py`;
- a variant file (INT8, fp16) is judged on every labeled image by the paired bootstrap of its
  mAP@0.5 difference from fp32 (`variant_agreement`).

Each epoch's report carries the time the run has left (`RunPace`), from the first epoch on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from visiondock.modelcard import ModelCard
from visiondock.postprocess import decode_detections
from visiondock.preprocess import PreprocessSpec
from visiondock.vocabulary import DETECTION, QUICK

from ..data import ImageRecord, TrainingDataError, region_labels
from ..detection_evaluation import detection_pr_curves, error_breakdown, map_difference, map_estimate
from ..evaluation import ImageResult, detection_metrics
from ..export import check_detection_parity, run_session, session
from ..fcos import (
    EVAL_SCORE_THRESHOLD,
    DetectionSample,
    FittedDetector,
    choose_score_threshold,
    detection_result,
    fit_detector,
    image_results,
)
from ..fcos.samples import check_samples
from ..fcos.training import detection_options
from ..quantize import CALIBRATION_IMAGES
from ..splits import rarest_label_groups, stratified_split
from .base import ExportInputs, Fitted, Prepared, RunContext, Task, Validation, input_tensors

log = logging.getLogger(__name__)
CHECK_IMAGES = 64
# Whether quick mode refits the detector on every labeled image after evaluating it (see `refit`).
QUICK_REFIT = False
# The fewest validation images a score threshold or the best epoch is chosen on; with fewer they train.
MIN_VALIDATION_IMAGES = 30
# A variant file is registered when, on every labeled image, its mAP@0.5 is not significantly lower than
# fp32's (the 95 % interval of the difference reaches 0) and the measured drop is at most this.
MAX_VARIANT_MAP50_DROP = 0.01
# Images a variant is judged on: every labeled image, up to this many (ONNX Runtime, both files).
VARIANT_CHECK_IMAGES = 400


@dataclass
class DetectionData(Prepared):
    samples: list[DetectionSample]  # one per record

    def part(self, name: str) -> list[DetectionSample]:
        """The samples of one part of the split: train, validation or test."""
        return [self.samples[i] for i in getattr(self.split, name)]

    def check_samples(self) -> list[DetectionSample]:
        """The images the export is checked on: validation images, or test images without them."""
        return (self.part("validation") or self.part("test"))[:CHECK_IMAGES]


@dataclass
class TrainedDetector(Fitted):
    detector: FittedDetector | None = None


@dataclass
class RunPace:
    """The time a detection run has left, from the seconds its epochs take.

    Training dominates: the remaining epochs (of the fit, then of the refit, scaled by its share
    of images) at the median pace of the last RECENT_EPOCHS (one slow epoch barely moves it, and it
    follows a machine that gets busier or quieter), plus the steps after training (evaluation,
    export, the variant files), estimated as AFTER_TRAINING_EPOCHS epochs of the fit (the
    end-to-end row of `make bench-detection` prints those steps' seconds beside the epochs'). Early
    stopping can only make the run end sooner than said.
    """

    fit_epochs: int
    refit_epochs: int  # 0 without a refit
    refit_share: float  # refit images / fit images: the refit's epochs take that much longer
    epoch_seconds: list[float] = field(default_factory=list)
    refitting: bool = False

    AFTER_TRAINING_EPOCHS = 1.5
    RECENT_EPOCHS = 5

    def epoch_done(self, seconds: float) -> None:
        self.epoch_seconds.append(seconds / self.refit_share if self.refitting else seconds)

    def remaining(self, epoch: int) -> float | None:
        """Seconds left after `epoch` of the current training (None before the first epoch)."""
        if not self.epoch_seconds:
            return None
        pace = float(np.median(self.epoch_seconds[-self.RECENT_EPOCHS:]))  # in seconds of a fit epoch
        if self.refitting:
            left = (self.refit_epochs - epoch) * self.refit_share
        else:
            left = (self.fit_epochs - epoch) + self.refit_epochs * self.refit_share
        return pace * (left + self.AFTER_TRAINING_EPOCHS)


def to_sample(record: ImageRecord, image: Image.Image, index: dict[str, int]) -> DetectionSample:
    """An annotated image with its normalized regions turned into pixel boxes of `image`."""
    width, height = image.size
    boxes = [[r["left"] * width, r["top"] * height, (r["left"] + r["width"]) * width,
              (r["top"] + r["height"]) * height] for r in record.regions]
    labels = [index[r["tag"]] for r in record.regions]
    return DetectionSample(image=image, boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                           labels=np.asarray(labels, dtype=np.int64))


def session_results(path: Path, samples: Sequence[DetectionSample], spec: PreprocessSpec, labels: list[str],
                    nms_iou: float, threads: int, batch_size: int = 8) -> list[ImageResult]:
    """An exported file's detections on `samples`, decoded as the scoring service decodes them."""
    runner = session(path, threads)
    results = []
    for start in range(0, len(samples), batch_size):
        part = samples[start:start + batch_size]
        boxes, scores = run_session(runner, input_tensors([s.image for s in part], spec))[:2]
        results += [detection_result(sample, decode_detections(b, s, labels, width=sample.width,
                                                               height=sample.height,
                                                               score_threshold=EVAL_SCORE_THRESHOLD, nms_iou=nms_iou),
                                     labels)
                    for sample, b, s in zip(part, boxes, scores, strict=True)]
    return results


class DetectionTask(Task[DetectionData, TrainedDetector]):
    name = DETECTION
    prepare_stage = "download"

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        options = self.options
        # The mode's detector defaults, with what the run asked for.
        asked = options.chosen("epochs", "batch_size", "learning_rate", "input_size")
        self.detector_options = detection_options(options.mode, backbone=self.backbone, seed=options.seed, **asked)
        self.pace: RunPace | None = None
        self._fp32_results: list[ImageResult] | None = None  # the exported file's answers the variants are judged by

    def prepare(self) -> DetectionData:
        records = self.run.project.records
        labels = region_labels(records)
        index = {name: i for i, name in enumerate(labels)}
        size = self.detector_options.input_size
        images = self.run.loader.load(records, draft_size=(2 * size, 2 * size))
        usable = [r for r in records if r.id in images]
        if not usable:
            raise TrainingDataError("none of the labeled images could be read; see the skipped images")
        labels_after = region_labels(usable)  # a skipped image may leave a tag with too few images
        if labels_after != labels:
            raise TrainingDataError(f"after skipping unreadable images, the tags "
                                    f"{sorted(set(labels) - set(labels_after))} have too few images")
        samples = [to_sample(r, images[r.id], index) for r in usable]
        groups = rarest_label_groups([[region["tag"] for region in r.regions] for r in usable])
        split = stratified_split(groups, [r.split for r in usable], test_fraction=self.options.test_fraction,
                                 validation_fraction=self.options.validation_fraction, seed=self.options.seed)
        if not split.test:
            raise TrainingDataError("no images left for the held-out test split; label more images")
        if split.validation and len(split.validation) < MIN_VALIDATION_IMAGES:
            log.info("%d validation images are too few to choose an epoch or a threshold on (%d or more): they "
                     "train", len(split.validation), MIN_VALIDATION_IMAGES)
            split.train = sorted([*split.train, *split.validation])
            split.validation = []
        return DetectionData(labels=labels, records=usable, split=split, samples=samples)

    @property
    def refits(self) -> bool:
        return self.options.refit and (self.options.mode != QUICK or QUICK_REFIT)

    def _report_epoch(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        assert self.pace is not None
        self.pace.epoch_done(metrics["seconds"])
        self.run.steps.epoch(epoch, epochs, metrics, remaining_s=self.pace.remaining(epoch))

    def fit(self, data: DetectionData) -> TrainedDetector:
        epochs = self.detector_options.epochs
        train = data.part("train")
        everything = len(train) + len(data.split.validation) + len(data.split.test)
        self.pace = RunPace(fit_epochs=epochs, refit_epochs=epochs if self.refits else 0,
                            refit_share=everything / max(len(train), 1))
        fitted = fit_detector(train, data.part("validation"), data.labels, self.detector_options,
                              on_epoch=lambda epoch, metrics: self._report_epoch(epoch, epochs, metrics),
                              progress=self.options.progress)
        return TrainedDetector(history=fitted.history,
                               params={**fitted.params, "preprocess": fitted.preprocess.to_json()}, detector=fitted)

    def validate(self, data: DetectionData, model: TrainedDetector) -> Validation:
        fitted = model.detector
        assert fitted is not None
        validation = data.part("validation")
        score = choose_score_threshold(fitted, validation)
        if validation:
            selection = {"method": "best F1 on the validation images", "images": len(validation)}
        else:
            selection = {"method": "default", "images": 0,
                         "note": f"the score threshold is the default {score:g}: fewer than "
                                 f"{MIN_VALIDATION_IMAGES} images were left to choose it on"}
        test = data.part("test")
        check_samples(test, len(fitted.label_names), "evaluation")
        results = image_results(fitted, test)
        metrics = dict(detection_metrics(results, fitted.label_names, score_threshold=score))
        for row in metrics["per_class"].values():
            row["f1"] = _f1(row["precision"], row["recall"])
        metrics["test_count"] = len(test)
        metrics["threshold_selection"] = {**selection, "minimum_images": MIN_VALIDATION_IMAGES}
        metrics["estimate"] = map_estimate(results, len(fitted.label_names), source="held-out",
                                           seed=self.options.seed)
        metrics["pr_curves"] = detection_pr_curves(results, fitted.label_names)
        metrics["errors"] = error_breakdown(results, fitted.label_names, score_threshold=score)
        return Validation(thresholds={"score": float(score), "nms_iou": float(fitted.thresholds["nms_iou"])},
                          metrics=metrics)

    def refit(self, data: DetectionData, model: TrainedDetector) -> TrainedDetector | None:
        """The detector trained again on every labeled image (test and validation ones too) with the
        same options and seed, for the whole epoch schedule. The thresholds and metrics stay those of
        the evaluated detector.

        Not for the best validation epoch: on the five grocery folds (bench/training_detection.py
        --as-trained) validation on three photos chose epochs 48-55 of 60, and the refit for those
        scored mAP@[.5:.95] 0.695 per fold against 0.714 for the whole schedule (4 folds of 5 better,
        one even). Advanced mode refits; quick mode only where QUICK_REFIT says it pays."""
        if not self.refits:
            return None
        assert model.detector is not None
        split = data.split
        everything = [data.samples[i] for i in sorted({*split.train, *split.validation, *split.test})]
        epochs = self.detector_options.epochs
        log.info("refit the detector on all %d labeled images for %d epochs (evaluated on %d held-out ones)",
                 len(everything), epochs, len(split.test))
        self.run.steps.stage("refit")  # a second training: minutes on a CPU, reported epoch by epoch
        if self.pace is not None:
            self.pace.refitting = True
        fitted = fit_detector(everything, [], data.labels, self.detector_options,
                              on_epoch=lambda epoch, metrics: self._report_epoch(epoch, epochs, metrics),
                              progress=self.options.progress)
        return TrainedDetector(history=model.history, detector=fitted,
                               params={**model.params, "refit_images": len(everything), "refit_epochs": epochs})

    def export_inputs(self, data: DetectionData, model: TrainedDetector) -> ExportInputs:
        assert model.detector is not None
        spec = model.detector.preprocess
        return ExportInputs(
            module=model.detector.export_module(), preprocess=spec, output_names=["boxes", "scores"],
            card_extra={"mode": self.options.mode},
            check_inputs=input_tensors([s.image for s in data.check_samples()], spec),
            check_source="validation" if data.split.validation else "test",
        )

    def check_parity(self, module: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
        return check_detection_parity(module, path, inputs, card)

    def calibration_inputs(self, data: DetectionData, exported: ExportInputs) -> np.ndarray:
        train = data.part("train")
        rng = np.random.default_rng(self.options.seed)
        chosen = sorted(rng.permutation(len(train))[:CALIBRATION_IMAGES].tolist())
        return input_tensors([train[i].image for i in chosen], exported.preprocess)

    def variant_agreement(self, data: DetectionData, exported: ExportInputs, validation: Validation,
                          fp32_path: Path, variant_path: Path, variant: str) -> dict[str, Any]:
        """The variant against fp32 on every labeled image (up to VARIANT_CHECK_IMAGES): how their answers
        differ does not depend on whether the model learned from the image, and a split of a few images
        cannot tell a drop of 0.01 from luck. Accepted when the 95 % interval of the mAP@0.5 difference
        reaches 0 (not significantly worse) and the measured drop is at most MAX_VARIANT_MAP50_DROP."""
        check = data.samples[:VARIANT_CHECK_IMAGES]
        args = (exported.preprocess, data.labels, validation.thresholds["nms_iou"], self.options.cpu_threads)
        if self._fp32_results is None:  # the same for every variant
            self._fp32_results = session_results(fp32_path, check, *args)
        fp32 = self._fp32_results
        other = session_results(variant_path, check, *args)
        difference = map_difference(fp32, other, len(data.labels), seed=self.options.seed)
        fp32_map = detection_metrics(fp32, data.labels, score_threshold=EVAL_SCORE_THRESHOLD)["map_50"]
        other_map = detection_metrics(other, data.labels, score_threshold=EVAL_SCORE_THRESHOLD)["map_50"]
        drop = (fp32_map or 0.0) - (other_map or 0.0)
        high = difference["high"] if difference["high"] is not None else 0.0
        accepted = drop <= MAX_VARIANT_MAP50_DROP and high >= 0.0
        return {"map_50_fp32": fp32_map, f"map_50_{variant}": other_map, "map_50_drop": drop,
                "map_50_difference": difference, "checked": len(check), "checked_on": "all labeled images",
                "accepted": accepted, "max_map_50_drop": MAX_VARIANT_MAP50_DROP}


def _f1(precision: float, recall: float | None) -> float | None:
    if recall is None:
        return None
    return round(2 * precision * recall / (precision + recall), 6) if precision + recall else 0.0
