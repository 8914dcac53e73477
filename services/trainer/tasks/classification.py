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
import tempfile
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torch import nn

from visiondock.faces import detector_card
from visiondock.modelcard import ModelCard
from visiondock.preprocess import PreprocessSpec, to_tensor
from visiondock.vocabulary import (
    ADVANCED,
    AUTO,
    CROSS_VALIDATION,
    FACE,
    HEADS,
    HELD_OUT,
    LINEAR,
    MULTICLASS,
    MULTILABEL,
    QUICK,
    UNKNOWN_LABEL,
)

from ..backbone import (
    BACKBONE_SPECS,
    PooledFeatures,
    Top,
    Trunk,
    backbone_spec,
    default_preprocess,
    load_pretrained,
    top_start,
)
from ..cache_budget import mark_used
from ..data import ImageRecord, TrainingDataError, class_targets, multilabel_targets
from ..evaluation import (
    choose_confidence_threshold,
    confidence_report,
    multiclass_metrics,
    multilabel_metrics,
    multilabel_thresholds,
)
from ..export import check_parity, export_graph, run_session, session, top1_agreement
from ..features import (
    CACHE_FORMAT,
    FeatureCache,
    FeatureSpeed,
    FrozenRunner,
    atomic_write,
    recipe_hash,
    run_batched,
)
from ..finetune import FACE_AUGMENT, AugmentOptions, FineTuneOptions, fine_tune
from ..heads import (
    WEIGHT_DECAYS,
    HeadFit,
    HeadOutputs,
    ImageClassifier,
    activate,
    fit_head,
    head_logits,
    head_validation,
    loss_fn,
)
from ..image_inputs import ImageInputs
from ..quantize import CALIBRATION_IMAGES, MIN_TOP1_AGREEMENT, compose_int8, quantize_int8
from ..splits import Split, rarest_label_groups, stratified_split
from .base import ExportInputs, Fitted, Prepared, RunContext, Task, Validation, input_tensors

log = logging.getLogger(__name__)
CHECK_IMAGES = 256
# evaluation=auto cross-validates below this many images in the smallest class: a held-out split
# of a few images per class would test on one or two of them and train on fewer still.
CROSS_VALIDATE_BELOW = 6
MAX_FOLDS = 5
# `auto` choices are made on validation images' loss; fewer than this and the defaults are kept.
MIN_SELECTION_IMAGES = 5
# The name the quantized backbone's output and the float head's input share in the INT8 variant.
FEATURES_NAME = "features"


@dataclass
class ClassificationData(Prepared):
    # Per image: the class index (-1: `unknown`, face preset), or a row of 0/1 per tag (multilabel).
    targets: np.ndarray
    spec: PreprocessSpec
    inputs: ImageInputs
    features: dict[str, np.ndarray]  # pooled backbone features by image id
    feature_dim: int
    test: list[int]  # the test images that have an input (face preset: a face)
    # Cross-validation: each image's fold (indices into `records`); empty with a held-out split.
    folds: list[list[int]] = field(default_factory=list)
    # `auto` backbone or head: the winning head, fitted on the training images while choosing.
    selected: HeadFit | None = None

    def features_of(self, indices: Sequence[int], features: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The images' pooled features: this backbone's, or those of `features` (another one's)."""
        if not len(indices):
            return np.zeros((0, self.feature_dim), np.float32)
        vectors = self.features if features is None else features
        return np.stack([vectors[self.records[i].id] for i in indices])

    def images_of(self, indices: Sequence[int], desc: str = "download images") -> list[Image.Image]:
        return self.inputs.present([self.records[i] for i in indices], desc)


@dataclass
class FittedClassifier(Fitted):
    backbone: nn.Module | None = None  # the pretrained model; in advanced mode its upper blocks fine-tuned
    head: nn.Module | None = None
    # Advanced mode: the fine-tuned blocks, and the frozen trunk below them that feeds them.
    top: Top | None = None
    trunk: FrozenRunner | None = None
    head_epochs: int | None = None  # MLP: the epoch kept, what a refit trains for
    # Cross-validation: every image's probabilities from the model of the folds that left it out.
    out_of_fold: np.ndarray | None = None


class ClassificationTask(Task[ClassificationData, FittedClassifier]):
    """What multiclass, multilabel and face identification share; the subclasses say how labels
    become targets and how held-out predictions become thresholds and metrics."""

    prepare_stage = "features"
    multilabel = False
    face_margin: float | None = None  # face preset: crop the largest face, widened by this margin
    augment = AugmentOptions()

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.head = LINEAR if self.options.head == AUTO else self.options.head
        self._seconds_per_image: dict[str, float] = {}  # measured in this run

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
        spec, inputs, features = self._backbone_inputs(records, self.backbone)

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
                                  feature_dim=backbone_spec(self.backbone).feature_dim, test=[])
        self.keep_trainable(data)
        data.test = [i for i in split.test if inputs.has_input(usable[i])]
        if self._cross_validates(data):
            self._make_folds(data)
            self._keep_defaults("metrics are cross-validated: the defaults are kept")
            return data
        self._require_every_label_trained(data)
        if not data.test:
            raise TrainingDataError("no images left for the held-out test split; label more images")
        self._select(data)
        return data

    def _backbone_inputs(self, records: Sequence[ImageRecord],
                         backbone: str) -> tuple[PreprocessSpec, ImageInputs, dict[str, np.ndarray]]:
        """A backbone's preprocessing, the images decoded for it, and their pooled features."""
        spec = default_preprocess(backbone)
        inputs = ImageInputs(self.run.loader, spec, cache_dir=self.run.cache_dir, face_margin=self.face_margin,
                             progress=self.options.progress)
        return spec, inputs, self._features(records, inputs, spec, backbone)

    # -- auto: the backbone and head with the lowest validation loss ----------------------
    def _keep_defaults(self, why: str) -> None:
        if self.options.backbone == AUTO or self.options.head == AUTO:
            log.info("backbone %s, head %s: %s", self.backbone, self.head, why)
            self.run.report["selection"] = {"backbone": self.backbone, "head": self.head, "skipped": why}

    def _select(self, data: ClassificationData) -> None:
        """Fit a head per candidate on the training images; keep the lowest validation loss. The
        backbones tried are the cheapest first while their features fit in the time budget."""
        options = self.options
        if options.backbone != AUTO and options.head != AUTO:
            return
        if options.mode != QUICK:
            self._keep_defaults(f"choosing is for quick mode; {options.mode} mode fine-tunes the default")
            return
        train, validation = data.split.train, self.known(data, data.split.validation)
        if len(validation) < MIN_SELECTION_IMAGES:
            self._keep_defaults(f"fewer than {MIN_SELECTION_IMAGES} validation images to choose on")
            return
        backbones, estimates = ([self.backbone], {}) if options.backbone != AUTO else self._affordable(data)
        heads = list(HEADS) if options.head == AUTO else [self.head]
        found = {self.backbone: (data.spec, data.inputs, data.features)}
        tried: list[dict[str, Any]] = []
        best: tuple[float, str, str, HeadFit] | None = None
        for backbone in backbones:
            if backbone not in found:
                found[backbone] = self._backbone_inputs(data.records, backbone)
            train_x, val_x = (data.features_of(part, found[backbone][2]) for part in (train, validation))
            for head in heads:
                fit = fit_head(train_x, data.targets[train], val_x, data.targets[validation], kind=head,
                               num_outputs=len(data.labels), multilabel=self.multilabel, seed=options.seed)
                point = head_validation(fit.head, val_x, data.targets[validation], multilabel=self.multilabel)
                tried.append({"backbone": backbone, "head": head, "weight_decay": fit.weight_decay, **point})
                # Ties go to the earlier, cheaper candidate.
                if best is None or point["val_loss"] < best[0]:
                    best = (point["val_loss"], backbone, head, fit)
        assert best is not None
        _, self.backbone, self.head, data.selected = best
        data.spec, data.inputs, data.features = found[self.backbone]
        data.feature_dim = backbone_spec(self.backbone).feature_dim
        report = {"backbone": self.backbone, "head": self.head, "chosen_on": "validation loss",
                  "validation_images": len(validation), "tried": tried}
        if estimates:
            report |= {"budget_s": options.selection_budget, "estimated_feature_s": estimates}
        self.run.report["selection"] = report
        log.info("chose backbone %s and head %s on %d validation images: %s", self.backbone, self.head,
                 len(validation), ", ".join(f"{t['backbone']}/{t['head']} loss {t['val_loss']:.4f}" for t in tried))

    def _affordable(self, data: ClassificationData) -> tuple[list[str], dict[str, float]]:
        """The backbones, cheapest first, whose features for every image (as if none were cached, so
        the same images always try the same backbones) fit in the budget together; the cheapest always."""
        count = len(data.records)
        first = backbone_spec(self.backbone)
        recorded = FeatureSpeed(self.run.cache_dir).read()
        rate = self._seconds_per_image.get(first.name) or recorded.get(first.name) or \
            FeatureSpeed.DEFAULT_SECONDS_PER_IMAGE * first.relative_cost
        estimates = {first.name: round(count * rate, 1)}
        chosen, total = [first.name], count * rate
        for spec in sorted(BACKBONE_SPECS.values(), key=lambda b: b.relative_cost):
            if spec.name == first.name:
                continue
            estimate = count * rate * spec.relative_cost / first.relative_cost
            estimates[spec.name] = round(estimate, 1)
            if total + estimate <= self.options.selection_budget:
                chosen.append(spec.name)
                total += estimate
        return chosen, estimates

    def _cross_validates(self, data: ClassificationData) -> bool:
        chosen = self.options.evaluation
        if chosen == HELD_OUT or self.options.mode != QUICK or self.face_margin is not None:
            return False
        if chosen == CROSS_VALIDATION:
            return True
        assert chosen == AUTO
        if any(r.split == "test" for r in data.records):
            return False  # the project chose its test images: measure on them
        smallest = min(Counter(self.strata(data.records)).values())
        return smallest < CROSS_VALIDATE_BELOW or not data.test

    def _make_folds(self, data: ClassificationData) -> None:
        """Every image in training, dealt per stratum into k folds (k = the smallest class, at most 5)."""
        strata = self.strata(data.records)
        counts = Counter(strata)
        smallest = min(counts.values())
        if smallest < 2:
            rare = sorted(name for name, n in counts.items() if n < 2)
            raise TrainingDataError(f"{', '.join(map(repr, rare))} ha{'s' if len(rare) == 1 else 've'} one image; "
                                    "label at least two images of every class")
        folds: list[list[int]] = [[] for _ in range(min(MAX_FOLDS, smallest))]
        rng = np.random.default_rng(self.options.seed)
        dealt = 0
        for name in sorted(counts):
            for index in rng.permutation([i for i, s in enumerate(strata) if s == name]):
                folds[dealt % len(folds)].append(int(index))
                dealt += 1
        data.folds = [sorted(fold) for fold in folds]
        data.split = Split(train=list(range(len(data.records))))
        data.test = []
        if smallest < CROSS_VALIDATE_BELOW:
            message = (f"few images per class (the smallest has {smallest}): metrics and thresholds are estimated "
                       f"by {len(folds)}-fold cross-validation and the model trains on every image; label more "
                       "images for metrics that can be trusted")
            log.warning(message)
            self.run.report.setdefault("warnings", []).append(message)

    def _features(self, records: Sequence[ImageRecord], inputs: ImageInputs, spec: PreprocessSpec,
                  backbone: str) -> dict[str, np.ndarray]:
        """Pooled features of every image that can train: from the cache, or computed from its pixels."""
        options = self.options
        cache = FeatureCache(self.run.cache_dir, {"backbone": backbone, "preprocess": spec.to_json(),
                                                  "crop": self._crop()})
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
            started = time.perf_counter()
            images = inputs.get(missing)
            ready = [(r, img) for r, img in zip(missing, images, strict=True) if img is not None]
            runner = self._frozen_runner(lambda: PooledFeatures(load_pretrained(backbone)), "pooled", spec, backbone)
            output = run_batched(runner, [img for _, img in ready], lambda img: to_tensor(img, spec),
                                 desc=f"compute features ({backbone})", progress=options.progress)
            for (record, _), vector in zip(ready, output, strict=True):
                cache.put(record.id, vector)
                vectors[record.id] = vector
            computed = len(ready)
            if computed:
                seconds = time.perf_counter() - started
                self._seconds_per_image[backbone] = seconds / computed
                FeatureSpeed(self.run.cache_dir).record(backbone, seconds, computed)
        counts = self.run.report.setdefault("features", {"computed": 0, "cached": 0})
        counts["computed"] += computed
        counts["cached"] += len(vectors) - computed
        log.info("%s features: %d computed, %d from the cache", backbone, computed, len(vectors) - computed)
        return vectors

    def _crop(self) -> dict[str, Any] | None:
        """How a face preset crops its inputs (part of what cached computations are keyed by)."""
        return detector_card(self.face_margin) if self.face_margin is not None else None

    def _frozen_runner(self, build: Callable[[], nn.Module], part: str, spec: PreprocessSpec,
                       backbone: str) -> FrozenRunner:
        # Exported once per cache directory, named by what it computes.
        path = self.run.cache_dir / "models" / f"{backbone}-{part}-{spec.size}-f{CACHE_FORMAT}.onnx"
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
        if data.folds:
            return self._cross_validate(data)
        options = self.options
        train, validation = data.split.train, self.known(data, data.split.validation)
        fit = data.selected or fit_head(data.features_of(train), data.targets[train], data.features_of(validation),
                                        data.targets[validation], kind=self.head, num_outputs=len(data.labels),
                                        multilabel=self.multilabel, seed=options.seed,
                                        weight_decay=options.weight_decay)
        model = FittedClassifier(history=fit.history, params={**self._chosen(), "weight_decay": fit.weight_decay},
                                 backbone=load_pretrained(self.backbone), head=fit.head, head_epochs=fit.epochs)
        if options.mode == ADVANCED:
            self._fine_tune(data, model, train, validation)
        model.params |= {"preprocess": data.spec.to_json(), "feature_dim": data.feature_dim}
        return model

    def _cross_validate(self, data: ClassificationData) -> FittedClassifier:
        """Out-of-fold probabilities for each weight decay; the decay with the lowest out-of-fold
        loss is kept, and the model trains on every image with it."""
        options = self.options
        head_options = {"kind": self.head, "num_outputs": len(data.labels), "multilabel": self.multilabel,
                        "seed": options.seed}
        empty = data.features_of([])
        candidates: list[tuple[float, float, np.ndarray]] = []
        for decay in [options.weight_decay] if options.weight_decay is not None else WEIGHT_DECAYS:
            out_of_fold = np.zeros((len(data.records), len(data.labels)), np.float32)
            for fold in data.folds:
                held = set(fold)
                train = [i for i in data.split.train if i not in held]
                head = fit_head(data.features_of(train), data.targets[train], empty, data.targets[:0],
                                weight_decay=decay, **head_options).head
                out_of_fold[fold] = activate(head_logits(head, data.features_of(fold)), multilabel=self.multilabel)
            targets = torch.from_numpy(data.targets.astype(np.float32 if self.multilabel else np.int64))
            logits = torch.from_numpy(out_of_fold)
            # Probabilities back to the logits the loss expects (clipped away from 0 and 1).
            logits = (torch.logit(logits.clamp(1e-6, 1 - 1e-6)) if self.multilabel else
                      torch.log(logits.clamp_min(1e-9)))
            candidates.append((loss_fn(logits, targets, multilabel=self.multilabel).item(), decay, out_of_fold))
        _, decay, out_of_fold = min(candidates, key=lambda c: c[0])
        everything = data.split.train
        fit = fit_head(data.features_of(everything), data.targets[everything], empty, data.targets[:0],
                       weight_decay=decay, **head_options)
        history = [{"weight_decay": d, "out_of_fold_loss": round(c_loss, 6)} for c_loss, d, _ in candidates]
        return FittedClassifier(history=history, params={**self._chosen(), "weight_decay": decay,
                                                         "folds": len(data.folds), "preprocess": data.spec.to_json(),
                                                         "feature_dim": data.feature_dim,
                                                         "refit_images": len(everything)},
                                backbone=load_pretrained(self.backbone), head=fit.head, out_of_fold=out_of_fold)

    def _chosen(self) -> dict[str, Any]:
        """The backbone and head the model is built with (an `auto` option's choice), stored with it."""
        selection = self.run.report.get("selection")
        return {"backbone": self.backbone, "head": self.head, **({"selection": selection} if selection else {})}

    def _fine_tune(self, data: ClassificationData, model: FittedClassifier, train: list[int],
                   validation: list[int]) -> None:
        """Fine-tune the backbone's upper blocks and the head in place, starting from the quick head."""
        assert model.backbone is not None and model.head is not None
        options = self.options
        start = top_start(model.backbone, options.fine_tune_stages)
        trunk = self._frozen_runner(lambda: Trunk(load_pretrained(self.backbone), start), f"trunk{start}",
                                    data.spec, self.backbone)
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
        if model.out_of_fold is not None:
            # Every image is validation and test image once, predicted by the folds that left it out.
            everything = data.split.train
            folded = replace(data, split=Split(train=everything, validation=everything, test=everything),
                             test=everything)
            validation = self.measure(folded, model.out_of_fold, model.out_of_fold)
            validation.metrics["evaluation"] = {"method": CROSS_VALIDATION, "folds": len(data.folds),
                                                "images": len(everything)}
            if "threshold" in validation.metrics:
                validation.metrics["threshold"]["chosen_on"] = "out-of-fold predictions"
            return validation
        val_probs = self.probabilities(data, model, data.split.validation)
        test_probs = self.probabilities(data, model, data.test)
        validation = self.measure(data, val_probs, test_probs)
        validation.metrics["evaluation"] = {"method": HELD_OUT, "test_images": len(data.test)}
        return validation

    def refit(self, data: ClassificationData, model: FittedClassifier) -> FittedClassifier | None:
        """Quick mode: the head again, on every labeled image (test and validation ones too) with the
        weight decay (and MLP epochs) chosen on validation. Cross-validated models already are."""
        if not self.options.refit or self.options.mode != QUICK or model.out_of_fold is not None:
            return None
        split = data.split
        everything = self.known(data, sorted(i for i in {*split.train, *split.validation, *split.test}
                                             if data.records[i].id in data.features))
        if self.face_margin is not None:
            everything = [i for i in everything if data.targets[i] >= 0]
        fit = fit_head(data.features_of(everything), data.targets[everything], data.features_of([]),
                       data.targets[:0], kind=self.head, num_outputs=len(data.labels),
                       multilabel=self.multilabel, seed=self.options.seed, weight_decay=model.params["weight_decay"],
                       epochs=model.head_epochs, start=model.head)
        log.info("refit the head on all %d labeled images (evaluated on %d held-out ones)", len(everything),
                 len(data.test))
        return replace(model, head=fit.head, params={**model.params, "refit_images": len(everything)})

    # -- export ----------------------------------------------------------------------------
    def export_inputs(self, data: ClassificationData, model: FittedClassifier) -> ExportInputs:
        assert model.backbone is not None and model.head is not None
        source, check = next((name, part) for name, part in (("validation", data.split.validation),
                                                             ("test", data.test), ("training", data.split.train))
                             if part or name == "training")
        check = check[:CHECK_IMAGES]
        images = data.images_of(check)
        # Quick mode: the fp32 answers are the head on the features already computed for these images
        # (the parity check holds the exported file to them); that saves running the fp32 file again.
        expected = self.probabilities(data, model, check) if model.top is None and len(images) == len(check) \
            else None
        return ExportInputs(
            module=ImageClassifier(PooledFeatures(model.backbone), model.head, multilabel=self.multilabel).eval(),
            preprocess=data.spec, output_names=["probabilities"], card_extra=self.card_extra(),
            check_inputs=input_tensors(images, data.spec), check_source=source, check_expected=expected,
        )

    def card_extra(self) -> dict[str, Any]:
        return {"mode": self.options.mode, "head": self.head}

    def check_parity(self, module: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
        return check_parity(module, path, inputs)

    def _calibration_images(self, data: ClassificationData) -> list[int]:
        # The training images with the lowest SHA-256: a fair sample that stays the same when images are
        # added (a new one enters only if its hash is lower), so the quantized backbone stays cached.
        return sorted(data.split.train, key=lambda i: data.records[i].id)[:CALIBRATION_IMAGES]

    def calibration_inputs(self, data: ClassificationData, exported: ExportInputs) -> np.ndarray:
        return input_tensors(data.images_of(self._calibration_images(data)), data.spec)

    def int8_model(self, data: ClassificationData, model: FittedClassifier, exported: ExportInputs,
                   fp32_path: Path, int8_path: Path) -> Path:
        """Quick mode: the quantized frozen backbone (from the cache, or quantized and kept there) under
        the float head. Advanced mode fine-tunes the backbone: the whole graph is quantized."""
        if model.top is not None:
            return super().int8_model(data, model, exported, fp32_path, int8_path)
        assert model.backbone is not None and model.head is not None
        chosen = self._calibration_images(data)
        recipe = {"backbone": self.backbone, "preprocess": data.spec.to_json(), "crop": self._crop(),
                  "calibration": [data.records[i].id for i in chosen], "onnxruntime": ort.__version__,
                  "torch": torch.__version__}
        backbone_int8 = self.run.cache_dir / "models" / f"{self.backbone}-pooled-int8-{recipe_hash(recipe)}.onnx"
        size = data.spec.size
        with tempfile.TemporaryDirectory(prefix="visiondock-int8-") as workdir:
            cached = backbone_int8.exists()
            self.run.report["int8_backbone"] = "cached" if cached else "quantized"
            if cached:
                mark_used(backbone_int8)
                log.info("INT8 backbone from the cache (%s)", backbone_int8.name)
            else:
                log.info("quantizing the %s backbone on %d training images", self.backbone, len(chosen))
                backbone_fp32 = export_graph(PooledFeatures(model.backbone), torch.zeros(1, 3, size, size),
                                             Path(workdir) / "backbone.onnx", input_name="image",
                                             output_names=[FEATURES_NAME])
                calibration = self.calibration_inputs(data, exported)
                atomic_write(backbone_int8, lambda target: quantize_int8(backbone_fp32, target, calibration,
                                                                         float_feeding_layer=False))
            head = export_graph(HeadOutputs(model.head, multilabel=self.multilabel),
                                torch.zeros(1, data.feature_dim), Path(workdir) / "head.onnx",
                                input_name=FEATURES_NAME, output_names=exported.output_names)
            return compose_int8(backbone_int8, head, fp32_path, int8_path)

    def variant_agreement(self, data: ClassificationData, exported: ExportInputs, validation: Validation,
                          fp32_path: Path, variant_path: Path, variant: str) -> dict[str, Any]:
        threads = self.options.cpu_threads
        fp32 = exported.check_expected
        if fp32 is None:
            fp32 = run_session(session(fp32_path, threads), exported.check_inputs)[0]
        other = run_session(session(variant_path, threads), exported.check_inputs)[0]
        agreement = top1_agreement(fp32, other)
        result = {"top1_agreement": agreement, "max_abs_diff": float(np.abs(fp32 - other).max()),
                  "checked": len(exported.check_inputs), "checked_on": exported.check_source,
                  "accepted": agreement >= MIN_TOP1_AGREEMENT, "required_top1_agreement": MIN_TOP1_AGREEMENT}
        if self.multilabel:
            cut = np.array([validation.thresholds[label] for label in data.labels])
            result["tag_set_agreement"] = float(((fp32 >= cut) == (other >= cut)).all(axis=1).mean())
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

