"""Classification tasks: multiclass, multilabel and face identification, in quick or advanced mode.

`ClassificationTask` is what the three share and what their labels mean (targets, strata, which
answers are right, thresholds and metrics: `measure`); the subclasses say how. The work of a mode
is beside it: quick mode (`QuickClassification`, quick_classification.py) cross-validates
candidates over every labeled image and fits the chosen one on all of them; advanced mode
(`HeldOutClassification`, held_out_classification.py) holds images out and fine-tunes the upper
backbone blocks. The exported files, composed from frozen backbones in quick mode, and the INT8
variant's calibration and verdict are in classifier_files.py.

Face identification finds the largest face in each image (`visiondock.faces`), classifies the
crop, and answers `unknown` below a threshold; images tagged `unknown` are predicted and never
trained on; images without a face are listed in the run's report and counted as misses.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visiondock.faces import detector_card
from visiondock.modelcard import ModelCard
from visiondock.vocabulary import AUTO, FACE, LINEAR, MULTICLASS, MULTILABEL, QUICK, UNKNOWN_LABEL

from ..backbone import PooledFeatures
from ..crossval import correct
from ..data import ImageRecord, TrainingDataError, class_targets, multilabel_targets
from ..evaluation import (
    choose_confidence_threshold,
    confidence_report,
    multiclass_metrics,
    multilabel_metrics,
    multilabel_thresholds,
)
from ..export import check_parity
from ..feature_sets import FeatureSets
from ..finetune import FACE_AUGMENT, AugmentOptions
from ..heads import ImageClassifier, activate, head_logits
from ..splits import rarest_label_groups
from . import classifier_files
from .base import ExportInputs, RunContext, Task, Validation, input_tensors
from .classifier_data import ClassificationData, FittedClassifier
from .held_out_classification import HeldOutClassification, trunk_maps
from .quick_classification import QuickClassification

log = logging.getLogger(__name__)
# A threshold is chosen on at least this many images' predictions; with fewer, the default (below).
MIN_THRESHOLD_IMAGES = 30
# The `uncertain` (and the face preset's `unknown`) threshold without enough predictions to choose one:
# an answer the model gives less than even odds is flagged (answered `unknown`).
DEFAULT_CONFIDENCE_THRESHOLD = 0.5
DEFAULT_TAG_THRESHOLD = 0.5

__all__ = ["ClassificationData", "ClassificationTask", "FaceTask", "FittedClassifier", "MulticlassTask",
           "MultilabelTask"]


class ClassificationTask(Task[ClassificationData, FittedClassifier]):
    """What multiclass, multilabel and face identification share; the subclasses say how labels
    become targets and how predictions become thresholds and metrics. The mode (`self.mode`:
    quick or held out) prepares, fits and validates."""

    prepare_stage = "features"
    multilabel = False
    face_margin: float | None = None  # face preset: crop the largest face, widened by this margin
    augment = AugmentOptions()
    threshold_name = ""

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.head = LINEAR if self.options.head == AUTO else self.options.head
        self.mode: QuickClassification | HeldOutClassification = \
            QuickClassification(self) if self.quick else HeldOutClassification(self)

    @property
    def quick(self) -> bool:
        return self.options.mode == QUICK

    @property
    def metric_name(self) -> str:
        """What the estimate counts: an answer right as a whole."""
        return "exact-match accuracy" if self.multilabel else "accuracy"

    # -- what differs between the classification tasks -------------------------------------
    @abstractmethod
    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        """The label names (output order) and each image's target; TrainingDataError when they cannot train."""

    def strata(self, records: Sequence[ImageRecord]) -> list[str]:
        """The group each image is split (and dealt into folds) with."""
        return [r.tags[0] for r in records]

    @abstractmethod
    def measure(self, data: ClassificationData, tune: tuple[Sequence[int], np.ndarray],
                judge: tuple[Sequence[int], np.ndarray], tuned_on: str) -> Validation:
        """Thresholds from the `tune` images' probabilities (positions, rows), metrics from the `judge` images'."""

    @abstractmethod
    def right(self, data: ClassificationData, positions: Sequence[int], probabilities: np.ndarray,
              thresholds: dict[str, float]) -> np.ndarray:
        """Per image, whether the served answer is right (what the estimate counts)."""

    def tag_cuts(self, targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Per-tag thresholds chosen on some folds' predictions, to judge another fold with (multilabel)."""
        return np.ones(probabilities.shape[1]) * 0.5

    def scored(self, data: ClassificationData, positions: Sequence[int]) -> list[int]:
        """The images an estimate counts: all but those without a class to learn (`unknown`)."""
        return self.known(data, positions)

    def known(self, data: ClassificationData, indices: Sequence[int]) -> list[int]:
        """The images among `indices` with a class to learn (all but the face preset's `unknown`)."""
        return [i for i in indices if self.multilabel or data.targets[i] >= 0]

    # -- what both modes prepare with --------------------------------------------------------
    def feature_sets(self) -> FeatureSets:
        return FeatureSets(self.run.loader, self.run.cache_dir, threads=self.options.cpu_threads,
                           progress=self.options.progress, face_margin=self.face_margin, report=self.run.report)

    def usable(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        """The records whose image could be read."""
        skipped = {s["id"] for s in self.run.loader.skipped}
        usable = [r for r in records if r.id not in skipped]
        if not usable:
            raise TrainingDataError("none of the labeled images could be read; see the skipped images")
        return usable

    def never_train(self) -> frozenset[str]:
        return frozenset({UNKNOWN_LABEL}) if self.face_margin is not None else frozenset()

    def report_no_face(self, data: ClassificationData) -> None:
        if self.face_margin is None:
            return
        in_test = set(data.no_face_test)
        no_face = [{"id": data.records[i].id, "filename": data.records[i].filename,
                    "split": "test" if i in in_test else "train"} for i in data.no_face]
        self.run.report["no_face"] = no_face
        if no_face:
            log.warning("%d image(s) show no face the detector can find; listed in the run's report", len(no_face))

    def require_every_label_trained(self, data: ClassificationData, train: Sequence[int]) -> None:
        trainable = self.known(data, train)
        if self.multilabel:
            trained = {data.labels[c] for c in np.flatnonzero(data.targets[trainable].sum(axis=0) > 0)}
        else:
            trained = {data.labels[int(data.targets[i])] for i in trainable}
        lacking = [label for label in data.labels if label not in trained]
        if lacking:
            why = ("shows a face the detector finds; add frontal photos of them" if self.face_margin is not None else
                   "is on the training side; the project's explicit test split holds all of them")
            raise TrainingDataError(f"no image of {', '.join(map(repr, lacking))} {why}")

    # -- the steps of a run: the mode's ------------------------------------------------------
    def prepare(self) -> ClassificationData:
        records = self.run.project.records
        self.labels_and_targets(records)  # fail fast, before any download, on labels that cannot train a model
        return self.mode.prepare(records)

    def fit(self, data: ClassificationData) -> FittedClassifier:
        return self.mode.fit(data)

    def validate(self, data: ClassificationData, model: FittedClassifier) -> Validation:
        return self.mode.validate(data, model)

    def refit(self, data: ClassificationData, model: FittedClassifier) -> FittedClassifier | None:
        """Quick mode with test images: the head again on every labeled image (test images too) with the
        settings chosen. Without test images the model already learned from every image."""
        return self.mode.refit(data, model)

    def probabilities(self, data: ClassificationData, model: FittedClassifier, indices: Sequence[int]) -> np.ndarray:
        """What the exported model would output for these images (softmax or sigmoids)."""
        assert model.head is not None
        if model.top is None or model.trunk is None:  # quick: the head on the cached features
            return activate(head_logits(model.head, data.features_of(indices)), multilabel=self.multilabel)
        if not len(indices):
            return np.zeros((0, len(data.labels)), dtype=np.float32)
        maps = trunk_maps(data, model.trunk, indices, "evaluate", progress=self.options.progress)
        with torch.inference_mode():
            logits = model.head(model.top(torch.from_numpy(maps)))
        return activate(logits.numpy(), multilabel=self.multilabel)

    # -- export ----------------------------------------------------------------------------
    def export_inputs(self, data: ClassificationData, model: FittedClassifier) -> ExportInputs:
        assert model.head is not None
        source, check = self.mode.check_images(data)
        images = data.images_of(check)
        # Quick mode: the fp32 answers are the head on the features already computed for these images
        # (the exported file is held to them); that saves running the fp32 file again.
        expected = self.probabilities(data, model, check) if model.top is None and len(images) == len(check) \
            else None
        module = None
        if model.candidate is None:
            assert model.backbone is not None
            module = ImageClassifier(PooledFeatures(model.backbone), model.head, multilabel=self.multilabel).eval()
        return ExportInputs(module=module, preprocess=data.spec, output_names=["probabilities"],
                            card_extra=self.card_extra(model), check_inputs=input_tensors(images, data.spec),
                            check_source=source, check_expected=expected, fitted=model)

    def card_extra(self, model: FittedClassifier | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"mode": self.options.mode, "head": self.head}
        if model is not None and model.candidate is not None:
            extra |= {"backbones": list(model.candidate.backbones), "flip": model.candidate.flip,
                      "sqrt": model.candidate.root}
        return extra

    def export_file(self, data: ClassificationData, model: FittedClassifier, exported: ExportInputs,
                    card: ModelCard, path: Path) -> Path:
        if model.candidate is None:
            return super().export_file(data, model, exported, card, path)
        return classifier_files.compose_file(self, data, model, exported, card, path)

    def check_export(self, exported: ExportInputs, path: Path, card: ModelCard, images: int) -> dict[str, Any]:
        if exported.module is not None:
            return super().check_export(exported, path, card, images)
        return classifier_files.check_composed(exported, path, images, self.options.cpu_threads)

    def check_parity(self, module: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
        return check_parity(module, path, inputs)

    def calibration_inputs(self, data: ClassificationData, exported: ExportInputs) -> np.ndarray:
        return input_tensors(data.images_of(classifier_files.calibration_images(self, data)), data.spec)

    def int8_model(self, data: ClassificationData, model: FittedClassifier, exported: ExportInputs,
                   fp32_path: Path, int8_path: Path) -> Path:
        """Quick mode: the quantized frozen backbones (cached) under the float head; advanced mode
        fine-tunes the backbone, so the whole graph is quantized."""
        if model.candidate is None:
            return super().int8_model(data, model, exported, fp32_path, int8_path)
        return classifier_files.compose_int8(self, data, model, exported, fp32_path, int8_path)

    def variant_agreement(self, data: ClassificationData, exported: ExportInputs, validation: Validation,
                          fp32_path: Path, variant_path: Path, variant: str) -> dict[str, Any]:
        return classifier_files.judge_variant(self, data, exported, validation, fp32_path, variant_path, variant)


class MulticlassTask(ClassificationTask):
    """One class per image (softmax); below a confidence threshold an answer is flagged `uncertain`."""

    name = MULTICLASS
    threshold_name = "uncertain"

    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        return class_targets(records)

    def right(self, data: ClassificationData, positions: Sequence[int], probabilities: np.ndarray,
              thresholds: dict[str, float]) -> np.ndarray:
        return correct(probabilities, data.targets[list(positions)], multilabel=False)

    def measure(self, data: ClassificationData, tune: tuple[Sequence[int], np.ndarray],
                judge: tuple[Sequence[int], np.ndarray], tuned_on: str) -> Validation:
        key, target_precision = self.threshold_name, self.options.target_precision
        tune_positions, tune_probs = tune
        tune_targets = data.targets[list(tune_positions)]
        note = None
        if len(tune_positions) >= MIN_THRESHOLD_IMAGES:
            tune_correct = (tune_targets >= 0) & (tune_probs.argmax(1) == tune_targets)
            chosen = choose_confidence_threshold(tune_correct, tune_probs.max(1), target_precision=target_precision)
        else:
            chosen = None
            note = (f"{len(tune_positions)} images to choose the `{key}` threshold on, fewer than "
                    f"{MIN_THRESHOLD_IMAGES}: the default {DEFAULT_CONFIDENCE_THRESHOLD} is used (an answer with "
                    f"less than even odds is {'`unknown`' if key == 'unknown' else 'flagged uncertain'}); label "
                    "more images")
            self.run.report.setdefault("warnings", []).append(note)
        thresholds = {key: chosen if chosen is not None else DEFAULT_CONFIDENCE_THRESHOLD}
        judge_positions, judge_probs = judge
        judge_targets = data.targets[list(judge_positions)]
        known_judge = judge_targets >= 0
        metrics = multiclass_metrics(judge_targets[known_judge], judge_probs[known_judge], data.labels)
        judge_correct = known_judge & (judge_probs.argmax(1) == judge_targets)
        metrics["threshold"] = {"name": key, "value": thresholds[key], "target_precision": target_precision,
                                "chosen_on": tuned_on if chosen is not None else "default",
                                "images": len(tune_positions),
                                **({"note": note} if note else {}),
                                **confidence_report(judge_correct, judge_probs.max(1), thresholds[key])}
        return Validation(thresholds=thresholds, metrics=metrics)


class FaceTask(MulticlassTask):
    """The face preset: identify the largest face's person, or answer `unknown`.

    Images tagged `unknown` show people the model must not name: they tune and test the
    `unknown` threshold and are never trained on.
    """

    name = FACE
    threshold_name = "unknown"
    augment = FACE_AUGMENT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.face_margin = self.options.face_margin

    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        return class_targets(records, unknown_tag=UNKNOWN_LABEL)

    def measure(self, data: ClassificationData, tune: tuple[Sequence[int], np.ndarray],
                judge: tuple[Sequence[int], np.ndarray], tuned_on: str) -> Validation:
        validation = super().measure(data, tune, judge, tuned_on)
        judging_test = bool(data.test) and list(judge[0]) == list(data.test)
        test = set(data.no_face_test)
        no_face = data.no_face_test if judging_test else [i for i in data.no_face if i not in test]
        validation.metrics |= face_metrics(data, judge[0], judge[1], validation.thresholds[self.threshold_name],
                                           no_face)
        return validation

    def card_extra(self, model: FittedClassifier | None = None) -> dict[str, Any]:
        # No JPEG draft mode when scoring: the crop is a small part of the image.
        return {**super().card_extra(model), **detector_card(self.options.face_margin), "decode": "full"}


def face_metrics(data: ClassificationData, positions: Sequence[int], probs: np.ndarray, threshold: float,
                 no_face: Sequence[int]) -> dict[str, Any]:
    """Open-set numbers: what the `unknown` threshold does to known and unknown people among the judged
    images; an image of the same part without a face (`no_face`) counts as a miss."""
    targets = data.targets
    confident = probs.max(1) >= threshold
    right = probs.argmax(1) == targets[list(positions)]
    known = targets[list(positions)] >= 0
    known_total = int(known.sum()) + sum(1 for i in no_face if targets[i] >= 0)
    answered_right = int((known & confident & right).sum())
    unknown_faces = int((~known).sum())
    return {
        "test_no_face_count": len(no_face),
        "test_unknown_count": int(unknown_faces + sum(1 for i in no_face if targets[i] < 0)),
        # Known people answered with their name (an image without a face counts as a miss).
        "identification_rate": round(answered_right / known_total, 6) if known_total else None,
        # Faces of people the model does not know that it answered `unknown`.
        "unknown_rejection_rate": round(float((~known & ~confident).sum()) / unknown_faces, 6)
        if unknown_faces else None,
    }


class MultilabelTask(ClassificationTask):
    """Any number of tags per image (sigmoids); each tag has its own threshold, the best F1 on the
    out-of-fold (advanced: validation) predictions."""

    name = MULTILABEL
    multilabel = True

    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        return multilabel_targets(records)

    def strata(self, records: Sequence[ImageRecord]) -> list[str]:
        return rarest_label_groups([r.tags for r in records])

    def tag_cuts(self, targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        if len(targets) < MIN_THRESHOLD_IMAGES:
            return np.full(probabilities.shape[1], DEFAULT_TAG_THRESHOLD)
        chosen = multilabel_thresholds(targets, probabilities, [str(i) for i in range(probabilities.shape[1])])
        return np.array([chosen[str(i)] for i in range(probabilities.shape[1])])

    def right(self, data: ClassificationData, positions: Sequence[int], probabilities: np.ndarray,
              thresholds: dict[str, float]) -> np.ndarray:
        cut = np.array([thresholds[label] for label in data.labels])
        return correct(probabilities, data.targets[list(positions)], multilabel=True, cut=cut)

    def measure(self, data: ClassificationData, tune: tuple[Sequence[int], np.ndarray],
                judge: tuple[Sequence[int], np.ndarray], tuned_on: str) -> Validation:
        tune_positions, tune_probs = tune
        if len(tune_positions) >= MIN_THRESHOLD_IMAGES:
            thresholds = multilabel_thresholds(data.targets[list(tune_positions)], tune_probs, data.labels)
            note = None
        else:
            thresholds = dict.fromkeys(data.labels, DEFAULT_TAG_THRESHOLD)
            note = (f"{len(tune_positions)} images to choose the tag thresholds on, fewer than "
                    f"{MIN_THRESHOLD_IMAGES}: every tag uses {DEFAULT_TAG_THRESHOLD}; label more images")
            self.run.report.setdefault("warnings", []).append(note)
        judge_positions, judge_probs = judge
        metrics = multilabel_metrics(data.targets[list(judge_positions)], judge_probs, data.labels, thresholds)
        metrics["thresholds_chosen_on"] = tuned_on if note is None else "default"
        if note:
            metrics["thresholds_note"] = note
        return Validation(thresholds=thresholds, metrics=metrics)
