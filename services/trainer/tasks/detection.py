"""The detection task: annotation regions → `DetectionSample`s → the detector → held-out metrics.

The detector itself lives in `services.trainer.fcos`; this task turns a project's
labeled images into samples (regions are `left, top, width, height` fractions with a
`tag`; an image labeled with no region is a negative), splits them, and prepares what
export needs. Images are decoded at no less than twice the detector's input size (JPEG
draft mode), enough detail for zoom augmentation; the scoring service decodes at the
input size, and both are then resized to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from visiondock.modelcard import ModelCard
from visiondock.postprocess import decode_detections
from visiondock.preprocess import PreprocessSpec
from visiondock.vocabulary import DETECTION

from ..data import ImageRecord, TrainingDataError, region_labels
from ..evaluation import detection_metrics
from ..export import check_detection_parity, run_session, session
from ..fcos import (
    EVAL_SCORE_THRESHOLD,
    DetectionSample,
    DetectorOptions,
    FittedDetector,
    choose_score_threshold,
    detection_result,
    evaluate_detector,
    fit_detector,
)
from ..quantize import CALIBRATION_IMAGES, MAX_MAP50_DROP
from ..splits import rarest_label_groups, stratified_split
from .base import ExportInputs, Fitted, Prepared, RunContext, Task, Validation, input_tensors

log = logging.getLogger(__name__)
CHECK_IMAGES = 64


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


def to_sample(record: ImageRecord, image: Image.Image, index: dict[str, int]) -> DetectionSample:
    """An annotated image with its normalized regions turned into pixel boxes of `image`."""
    width, height = image.size
    boxes = [[r["left"] * width, r["top"] * height, (r["left"] + r["width"]) * width,
              (r["top"] + r["height"]) * height] for r in record.regions]
    labels = [index[r["tag"]] for r in record.regions]
    return DetectionSample(image=image, boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                           labels=np.asarray(labels, dtype=np.int64))


def map50_of_session(path: Path, samples: Sequence[DetectionSample], spec: PreprocessSpec, labels: list[str],
                     nms_iou: float, threads: int) -> float | None:
    """mAP@0.5 of an exported file's detections on `samples`, decoded as the scoring service decodes them."""
    boxes, scores = run_session(session(path, threads), input_tensors([s.image for s in samples], spec))[:2]
    results = [detection_result(sample, decode_detections(b, s, labels, width=sample.width, height=sample.height,
                                                          score_threshold=EVAL_SCORE_THRESHOLD, nms_iou=nms_iou),
                                labels)
               for sample, b, s in zip(samples, boxes, scores, strict=True)]
    map_50 = detection_metrics(results, labels, score_threshold=EVAL_SCORE_THRESHOLD)["map_50"]
    return None if map_50 is None else float(map_50)


class DetectionTask(Task[DetectionData, TrainedDetector]):
    name = DETECTION
    prepare_stage = "download"

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        options = self.options
        # The detector's defaults, with what the run asked for.
        asked = options.chosen("epochs", "batch_size", "learning_rate", "input_size")
        self.detector_options = DetectorOptions(**asked, backbone=self.backbone, seed=options.seed)

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
        return DetectionData(labels=labels, records=usable, split=split, samples=samples)

    def fit(self, data: DetectionData) -> TrainedDetector:
        epochs = self.detector_options.epochs
        fitted = fit_detector(data.part("train"), data.part("validation"), data.labels, self.detector_options,
                              on_epoch=lambda epoch, metrics: self.run.steps.epoch(epoch, epochs, metrics),
                              progress=self.options.progress)
        return TrainedDetector(history=fitted.history,
                               params={**fitted.params, "preprocess": fitted.preprocess.to_json()}, detector=fitted)

    def validate(self, data: DetectionData, model: TrainedDetector) -> Validation:
        fitted = model.detector
        assert fitted is not None
        score = choose_score_threshold(fitted, data.part("validation"))
        test = data.part("test")
        metrics = dict(evaluate_detector(fitted, test, score_threshold=score))
        metrics["test_count"] = len(test)
        return Validation(thresholds={"score": float(score), "nms_iou": float(fitted.thresholds["nms_iou"])},
                          metrics=metrics)

    def refit(self, data: DetectionData, model: TrainedDetector) -> TrainedDetector | None:
        """The detector trained again on every labeled image (test and validation ones too) with the
        same options and seed, for the whole epoch schedule. The thresholds and metrics stay those of
        the evaluated detector.

        Not for the best validation epoch: on the five grocery folds (bench/training_detection.py
        --as-trained) validation on three photos chose epochs 48-55 of 60, and the refit for those
        scored mAP@[.5:.95] 0.695 per fold against 0.714 for the whole schedule (4 folds of 5 better,
        one even)."""
        if not self.options.refit:
            return None
        assert model.detector is not None
        split = data.split
        everything = [data.samples[i] for i in sorted({*split.train, *split.validation, *split.test})]
        epochs = self.detector_options.epochs
        log.info("refit the detector on all %d labeled images for %d epochs (evaluated on %d held-out ones)",
                 len(everything), epochs, len(split.test))
        self.run.steps.stage("refit")  # a second training: minutes on a CPU, reported epoch by epoch
        fitted = fit_detector(everything, [], data.labels, self.detector_options,
                              on_epoch=lambda epoch, metrics: self.run.steps.epoch(epoch, epochs, metrics),
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
        check = data.check_samples()
        nms_iou = validation.thresholds["nms_iou"]
        threads = self.options.cpu_threads
        fp32 = map50_of_session(fp32_path, check, exported.preprocess, data.labels, nms_iou, threads)
        other = map50_of_session(variant_path, check, exported.preprocess, data.labels, nms_iou, threads)
        drop = (fp32 or 0.0) - (other or 0.0)
        return {"map_50_fp32": fp32, f"map_50_{variant}": other, "map_50_drop": drop, "checked": len(check),
                "checked_on": exported.check_source, "accepted": drop <= MAX_MAP50_DROP,
                "max_map_50_drop": MAX_MAP50_DROP}
