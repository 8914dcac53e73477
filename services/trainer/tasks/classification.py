"""Classification tasks: multiclass, multilabel and face identification, in quick or advanced mode.

Quick: pooled backbone features (cached per image) and a head (`heads.py`). Advanced:
the same head as a start, then the upper backbone blocks fine-tuned on augmented
images with early stopping on validation loss (`finetune.py`). Face identification
finds the largest face in each image (`visiondock.faces`), classifies the crop, and
answers `unknown` below a threshold tuned on validation faces; images without a face
are listed in the run's report and counted in the test metrics, never dropped silently.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from visiondock.faces import detector_card
from visiondock.modelcard import ModelCard
from visiondock.preprocess import PreprocessSpec, to_tensor
from visiondock.vocabulary import ADVANCED, FACE, MULTICLASS, MULTILABEL, UNKNOWN_LABEL

from ..backbone import PooledFeatures, Top, Trunk, backbone_spec, default_preprocess, load_pretrained, top_start
from ..data import ImageRecord, TrainingDataError, class_targets, multilabel_targets
from ..evaluation import (
    choose_confidence_threshold,
    confidence_report,
    multiclass_metrics,
    multilabel_metrics,
    multilabel_thresholds,
)
from ..export import check_parity, run_session, session, top1_agreement
from ..features import CACHE_FORMAT, FeatureCache, FrozenRunner, run_batched
from ..finetune import FACE_AUGMENT, AugmentOptions, FineTuneOptions, fine_tune
from ..heads import ImageClassifier, activate, fit_head, head_logits
from ..image_inputs import ImageInputs
from ..quantize import CALIBRATION_IMAGES, MIN_TOP1_AGREEMENT
from ..splits import rarest_label_groups, stratified_split
from .base import ExportInputs, Fitted, Prepared, Task, Validation, input_tensors

log = logging.getLogger(__name__)
CHECK_IMAGES = 256


@dataclass
class ClassificationData(Prepared):
    # Per image: the class index (-1: `unknown`, face preset), or a row of 0/1 per tag (multilabel).
    targets: np.ndarray
    spec: PreprocessSpec
    inputs: ImageInputs
    features: dict[str, np.ndarray]  # pooled backbone features by image id
    feature_dim: int
    test: list[int]  # the test images that have an input (face preset: a face)

    def features_of(self, indices: Sequence[int]) -> np.ndarray:
        if not len(indices):
            return np.zeros((0, self.feature_dim), np.float32)
        return np.stack([self.features[self.records[i].id] for i in indices])

    def images_of(self, indices: Sequence[int], desc: str = "download images") -> list[Image.Image]:
        return self.inputs.present([self.records[i] for i in indices], desc)


@dataclass
class FittedClassifier(Fitted):
    backbone: nn.Module | None = None  # the pretrained model; in advanced mode its upper blocks fine-tuned
    head: nn.Module | None = None
    # Advanced mode: the fine-tuned blocks, and the frozen trunk below them that feeds them.
    top: Top | None = None
    trunk: FrozenRunner | None = None


class ClassificationTask(Task[ClassificationData, FittedClassifier]):
    """What multiclass, multilabel and face identification share; the subclasses say how labels
    become targets and how held-out predictions become thresholds and metrics."""

    prepare_stage = "features"
    multilabel = False
    face_margin: float | None = None  # face preset: crop the largest face, widened by this margin
    augment = AugmentOptions()

    # -- what differs between the classification tasks -------------------------------------
    @abstractmethod
    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        """The label names (output order) and each image's target; TrainingDataError when they cannot train."""

    def strata(self, records: Sequence[ImageRecord]) -> list[str]:
        """The group each image is split with."""
        return [r.tags[0] for r in records]

    def keep_trainable(self, data: ClassificationData) -> None:
        """Drop from training and validation what cannot train (face preset: images without a face)."""

    @abstractmethod
    def measure(self, data: ClassificationData, val_probs: np.ndarray, test_probs: np.ndarray) -> Validation:
        """Thresholds from the validation images' probabilities, metrics from the test images'."""

    # -- prepare ---------------------------------------------------------------------------
    def prepare(self) -> ClassificationData:
        records = self.run.project.records
        self.labels_and_targets(records)  # fail fast, before any download, on labels that cannot train a model
        spec = default_preprocess(self.options.backbone)
        inputs = ImageInputs(self.run.loader, spec, cache_dir=self.run.cache_dir, face_margin=self.face_margin,
                             progress=self.options.progress)
        features = self._features(records, inputs, spec)

        skipped = {s["id"] for s in self.run.loader.skipped}
        usable = [r for r in records if r.id not in skipped]
        if not usable:
            raise TrainingDataError("none of the labeled images could be read; see the skipped images")
        labels, targets = self.labels_and_targets(usable)
        split = stratified_split(self.strata(usable), [r.split for r in usable],
                                 test_fraction=self.options.test_fraction,
                                 validation_fraction=self.options.validation_fraction, seed=self.options.seed,
                                 never_train=frozenset({UNKNOWN_LABEL}) if self.face_margin is not None else
                                 frozenset())
        data = ClassificationData(labels=labels, records=usable, split=split, targets=targets, spec=spec,
                                  inputs=inputs, features=features,
                                  feature_dim=backbone_spec(self.options.backbone).feature_dim, test=[])
        self.keep_trainable(data)
        self._require_every_label_trained(data)
        data.test = [i for i in split.test if inputs.has_input(usable[i])]
        if not data.test:
            raise TrainingDataError("no images left for the held-out test split; label more images")
        return data

    def _features(self, records: Sequence[ImageRecord], inputs: ImageInputs,
                  spec: PreprocessSpec) -> dict[str, np.ndarray]:
        """Pooled features of every image that can train: from the cache, or computed from its pixels."""
        options = self.options
        crop = detector_card(self.face_margin) if self.face_margin is not None else None
        cache = FeatureCache(self.run.cache_dir, {"backbone": options.backbone, "preprocess": spec.to_json(),
                                                  "crop": crop})
        if inputs.face:
            inputs.find_faces(records)
        unreadable = {item["id"] for item in self.run.loader.skipped}
        candidates = [r for r in records if r.id not in unreadable and inputs.has_input(r)]
        vectors = {r.id: v for r in candidates if (v := cache.get(r.id)) is not None}
        missing = [r for r in candidates if r.id not in vectors]
        if options.mode == ADVANCED:
            inputs.get(records)  # fine-tuning needs every image's pixels
        computed = 0
        if missing:
            images = inputs.get(missing)
            ready = [(r, img) for r, img in zip(missing, images, strict=True) if img is not None]
            runner = self._frozen_runner(lambda: PooledFeatures(load_pretrained(options.backbone)), "pooled", spec)
            output = run_batched(runner, [img for _, img in ready], lambda img: to_tensor(img, spec),
                                 desc="compute features", progress=options.progress)
            for (record, _), vector in zip(ready, output, strict=True):
                cache.put(record.id, vector)
                vectors[record.id] = vector
            computed = len(ready)
        self.run.report["features"] = {"computed": computed, "cached": len(vectors) - computed}
        log.info("features: %d computed, %d from the cache", computed, len(vectors) - computed)
        return vectors

    def _frozen_runner(self, build: Callable[[], nn.Module], part: str, spec: PreprocessSpec) -> FrozenRunner:
        # Exported once per cache directory, named by what it computes.
        path = self.run.cache_dir / "models" / f"{self.options.backbone}-{part}-{spec.size}-f{CACHE_FORMAT}.onnx"
        return FrozenRunner(build, input_size=spec.size, threads=self.options.cpu_threads, onnx_path=path)

    def _require_every_label_trained(self, data: ClassificationData) -> None:
        train = data.split.train
        if self.multilabel:
            trained = {data.labels[c] for c in np.flatnonzero(data.targets[train].sum(axis=0) > 0)}
        else:
            trained = {data.labels[int(data.targets[i])] for i in train}
        lacking = [label for label in data.labels if label not in trained]
        if lacking:
            why = ("shows a face the detector finds; add frontal photos of them" if self.face_margin is not None else
                   "is on the training side; the project's explicit test split holds all of them")
            raise TrainingDataError(f"no image of {', '.join(map(repr, lacking))} {why}")

    def known(self, data: ClassificationData, indices: Sequence[int]) -> list[int]:
        """The images among `indices` with a class to learn (all but the face preset's `unknown`)."""
        return [i for i in indices if self.multilabel or data.targets[i] >= 0]

    # -- fit -------------------------------------------------------------------------------
    def fit(self, data: ClassificationData) -> FittedClassifier:
        options = self.options
        train, validation = data.split.train, self.known(data, data.split.validation)
        fit = fit_head(data.features_of(train), data.targets[train], data.features_of(validation),
                       data.targets[validation], kind=options.head, num_outputs=len(data.labels),
                       multilabel=self.multilabel, seed=options.seed, weight_decay=options.weight_decay)
        model = FittedClassifier(history=fit.history, params={"head": options.head, "weight_decay": fit.weight_decay},
                                 backbone=load_pretrained(options.backbone), head=fit.head)
        if options.mode == ADVANCED:
            self._fine_tune(data, model, train, validation)
        model.params |= {"preprocess": data.spec.to_json(), "feature_dim": data.feature_dim}
        return model

    def _fine_tune(self, data: ClassificationData, model: FittedClassifier, train: list[int],
                   validation: list[int]) -> None:
        """Fine-tune the backbone's upper blocks and the head in place, starting from the quick head."""
        assert model.backbone is not None and model.head is not None
        options = self.options
        start = top_start(model.backbone, options.fine_tune_stages)
        trunk = self._frozen_runner(lambda: Trunk(load_pretrained(options.backbone), start), f"trunk{start}",
                                    data.spec)
        top = Top(model.backbone, start)
        if trunk.device is not None:
            top.to(trunk.device)
            model.head.to(trunk.device)
        settings = FineTuneOptions(**options.chosen("epochs", "batch_size", "learning_rate"), augment=self.augment)
        train_images = data.images_of(train)
        tuned = fine_tune(top, model.head, trunk, train_images, data.targets[train],
                          self._maps(data, trunk, validation, "validation maps"), data.targets[validation],
                          spec=data.spec, multilabel=self.multilabel, options=settings, seed=options.seed,
                          on_epoch=self.run.steps.epoch, progress=options.progress)
        model.head = tuned.head.cpu()
        top.cpu()
        model.backbone.cpu()
        model.top, model.trunk, model.history = top, trunk, tuned.history
        augment = settings.augment
        model.params |= {"fine_tuned_from_block": start, "epochs_run": tuned.epochs_run,
                         "best_epoch": tuned.best_epoch, "learning_rate": settings.learning_rate,
                         "batch_size": settings.batch_size,
                         "augment": {"min_area": augment.min_area, "flip": augment.flip, "jitter": augment.jitter}}

    def _maps(self, data: ClassificationData, trunk: FrozenRunner, indices: Sequence[int], desc: str) -> np.ndarray:
        """The frozen trunk's feature maps of the images: what the fine-tuned blocks start from."""
        images = data.images_of(indices)
        if not images:
            return np.zeros((0,), dtype=np.float32)
        return run_batched(trunk, images, lambda img: to_tensor(img, data.spec), desc=desc,
                           progress=self.options.progress)

    def probabilities(self, data: ClassificationData, model: FittedClassifier, indices: Sequence[int]) -> np.ndarray:
        """What the exported model would output for these images (softmax or sigmoids)."""
        assert model.head is not None
        if model.top is None or model.trunk is None:  # quick: the head on the cached features
            return activate(head_logits(model.head, data.features_of(indices)), multilabel=self.multilabel)
        if not len(indices):
            return np.zeros((0, len(data.labels)), dtype=np.float32)
        with torch.inference_mode():
            logits = model.head(model.top(torch.from_numpy(self._maps(data, model.trunk, indices, "evaluate"))))
        return activate(logits.numpy(), multilabel=self.multilabel)

    # -- validate --------------------------------------------------------------------------
    def validate(self, data: ClassificationData, model: FittedClassifier) -> Validation:
        val_probs = self.probabilities(data, model, data.split.validation)
        test_probs = self.probabilities(data, model, data.test)
        return self.measure(data, val_probs, test_probs)

    # -- export ----------------------------------------------------------------------------
    def export_inputs(self, data: ClassificationData, model: FittedClassifier) -> ExportInputs:
        assert model.backbone is not None and model.head is not None
        check = (data.split.validation or data.test)[:CHECK_IMAGES]
        return ExportInputs(
            module=ImageClassifier(PooledFeatures(model.backbone), model.head, multilabel=self.multilabel).eval(),
            preprocess=data.spec, output_names=["probabilities"], card_extra=self.card_extra(),
            check_inputs=input_tensors(data.images_of(check), data.spec),
            check_source="validation" if data.split.validation else "test",
        )

    def card_extra(self) -> dict[str, Any]:
        return {"mode": self.options.mode, "head": self.options.head}

    def check_parity(self, module: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
        return check_parity(module, path, inputs)

    def calibration_inputs(self, data: ClassificationData, exported: ExportInputs) -> np.ndarray:
        rng = np.random.default_rng(self.options.seed)
        chosen = sorted(rng.permutation(data.split.train)[:CALIBRATION_IMAGES].tolist())
        return input_tensors(data.images_of(chosen), data.spec)

    def int8_agreement(self, data: ClassificationData, exported: ExportInputs, validation: Validation,
                       fp32_path: Path, int8_path: Path) -> dict[str, Any]:
        threads = self.options.cpu_threads
        fp32 = run_session(session(fp32_path, threads), exported.check_inputs)[0]
        int8 = run_session(session(int8_path, threads), exported.check_inputs)[0]
        agreement = top1_agreement(fp32, int8)
        result = {"top1_agreement": agreement, "max_abs_diff": float(np.abs(fp32 - int8).max()),
                  "checked": len(exported.check_inputs), "checked_on": exported.check_source,
                  "accepted": agreement >= MIN_TOP1_AGREEMENT, "required_top1_agreement": MIN_TOP1_AGREEMENT}
        if self.multilabel:
            cut = np.array([validation.thresholds[label] for label in data.labels])
            result["tag_set_agreement"] = float(((fp32 >= cut) == (int8 >= cut)).all(axis=1).mean())
        return result


class MulticlassTask(ClassificationTask):
    """One class per image (softmax); below a confidence threshold an answer is flagged `uncertain`."""

    name = MULTICLASS
    threshold_name = "uncertain"
    # Without validation images: never flag (multiclass), or answer `unknown` below an even chance (face).
    default_threshold = 0.0

    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        return class_targets(records)

    def measure(self, data: ClassificationData, val_probs: np.ndarray, test_probs: np.ndarray) -> Validation:
        key, target_precision = self.threshold_name, self.options.target_precision
        val = data.split.validation
        val_targets = data.targets[val]
        val_correct = (val_targets >= 0) & (val_probs.argmax(1) == val_targets) if len(val) else np.zeros(0, bool)
        chosen = choose_confidence_threshold(val_correct, val_probs.max(1) if len(val) else np.zeros(0),
                                             target_precision=target_precision)
        thresholds = {key: chosen if chosen is not None else self.default_threshold}
        test_targets = data.targets[data.test]
        known_test = test_targets >= 0
        metrics = multiclass_metrics(test_targets[known_test], test_probs[known_test], data.labels)
        test_correct = known_test & (test_probs.argmax(1) == test_targets)
        metrics["threshold"] = {"name": key, "value": thresholds[key], "target_precision": target_precision,
                                "chosen_on": "validation" if chosen is not None else "default (no validation images)",
                                **confidence_report(test_correct, test_probs.max(1), thresholds[key])}
        return Validation(thresholds=thresholds, metrics=metrics)


class FaceTask(MulticlassTask):
    """The face preset: identify the largest face's person, or answer `unknown`.

    Images tagged `unknown` show people the model must not name: they tune and test the
    `unknown` threshold and are never trained on.
    """

    name = FACE
    threshold_name = "unknown"
    default_threshold = 0.5
    augment = FACE_AUGMENT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.face_margin = self.options.face_margin

    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        return class_targets(records, unknown_tag=UNKNOWN_LABEL)

    def keep_trainable(self, data: ClassificationData) -> None:
        split, inputs = data.split, data.inputs
        no_face = [{"id": r.id, "filename": r.filename, "split": part} for part in ("train", "validation", "test")
                   for r in (data.records[i] for i in getattr(split, part)) if not inputs.has_input(r)]
        self.run.report["no_face"] = no_face
        if no_face:
            log.warning("%d image(s) show no face the detector can find; listed in the run's report", len(no_face))
        split.train = [i for i in split.train if inputs.has_input(data.records[i]) and data.targets[i] >= 0]
        split.validation = [i for i in split.validation if inputs.has_input(data.records[i])]

    def measure(self, data: ClassificationData, val_probs: np.ndarray, test_probs: np.ndarray) -> Validation:
        validation = super().measure(data, val_probs, test_probs)
        validation.metrics |= face_metrics(data, test_probs, validation.thresholds[self.threshold_name])
        return validation

    def card_extra(self) -> dict[str, Any]:
        # No JPEG draft mode when scoring: the crop is a small part of the image.
        return {**super().card_extra(), **detector_card(self.options.face_margin), "decode": "full"}


def face_metrics(data: ClassificationData, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Open-set numbers: what the `unknown` threshold does to known and unknown people on test."""
    targets, test = data.targets, data.split.test
    confident = probs.max(1) >= threshold
    right = probs.argmax(1) == targets[data.test]
    known = targets[data.test] >= 0
    known_test = [i for i in test if targets[i] >= 0]
    no_face = [i for i in test if not data.inputs.has_input(data.records[i])]
    answered_right = int((known & confident & right).sum())
    unknown_faces = int((~known).sum())
    return {
        "test_no_face_count": len(no_face),
        "test_unknown_count": int(sum(1 for i in test if targets[i] < 0)),
        # Known people on test answered with their name (an image without a face counts as a miss).
        "identification_rate": round(answered_right / len(known_test), 6) if known_test else None,
        # Faces of people the model does not know that it answered `unknown`.
        "unknown_rejection_rate": round(float((~known & ~confident).sum()) / unknown_faces, 6)
        if unknown_faces else None,
    }


class MultilabelTask(ClassificationTask):
    """Any number of tags per image (sigmoids); each tag has its own threshold, the best F1 on validation."""

    name = MULTILABEL
    multilabel = True

    def labels_and_targets(self, records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
        return multilabel_targets(records)

    def strata(self, records: Sequence[ImageRecord]) -> list[str]:
        return rarest_label_groups([r.tags for r in records])

    def measure(self, data: ClassificationData, val_probs: np.ndarray, test_probs: np.ndarray) -> Validation:
        thresholds = multilabel_thresholds(data.targets[data.split.validation], val_probs, data.labels)
        metrics = multilabel_metrics(data.targets[data.test], test_probs, data.labels, thresholds)
        return Validation(thresholds=thresholds, metrics=metrics)

