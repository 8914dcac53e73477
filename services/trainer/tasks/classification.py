"""Classification tasks: multiclass, multilabel and face identification, in quick or advanced mode.

Quick mode (`QuickClassification`): pooled backbone features (cached per image and pass),
candidates (backbones, ensembles, flip, square-rooted features, head) compared by repeated stratified k-fold
cross-validation over every labeled image (`selection.py`, `crossval.py`), the model then
fitted on all of them. The out-of-fold predictions give the thresholds, the metrics and the
estimate of the accuracy on new photos with its interval; they also find likely label errors,
and near-duplicate images are kept in one fold (`audit.py`). The exported file is assembled
from the frozen backbone graphs and the head (`compose.py`); the INT8 variant is judged by its
accuracy on the same out-of-fold predictions.

Advanced mode (`HeldOutClassification`): a held-out split (validation and test), the quick head
as a start, then the upper backbone blocks fine-tuned on augmented images with early stopping
on validation loss (`finetune.py`).

Face identification finds the largest face in each image (`visiondock.faces`), classifies the
crop, and answers `unknown` below a threshold; images tagged `unknown` are predicted and never
trained on; images without a face are listed in the run's report and counted as misses.
"""

from __future__ import annotations

import logging
import tempfile
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
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
    BACKBONES,
    CROSS_VALIDATION,
    FACE,
    HELD_OUT,
    INT8,
    LINEAR,
    MLP,
    MULTICLASS,
    MULTILABEL,
    QUICK,
    UNKNOWN_LABEL,
)

from ..audit import (
    LABEL_ISSUE_PROBABILITY,
    duplicate_groups,
    duplicate_report,
    label_issues,
    near_duplicates_of,
    similar_pairs,
)
from ..backbone import PooledFeatures, Top, Trunk, backbone_spec, default_preprocess, load_pretrained, top_start
from ..cache_budget import mark_used
from ..compose import compose_classifier
from ..crossval import (
    CrossValidated,
    FoldPlan,
    Span,
    correct,
    cross_fitted_thresholds,
    cross_validate,
    estimate,
    paired_difference,
    plan_folds,
    predict_out_of_fold,
)
from ..data import ImageRecord, TrainingDataError, class_targets, multilabel_targets
from ..evaluation import (
    choose_confidence_threshold,
    confidence_report,
    multiclass_metrics,
    multilabel_metrics,
    multilabel_thresholds,
)
from ..export import ParityError, check_parity, export_graph, run_session, session, top1_agreement, write_card
from ..feature_sets import FeatureSets, int8_recipe_name, pass_spec
from ..features import CACHE_FORMAT, FrozenRunner, atomic_write, run_batched
from ..finetune import FACE_AUGMENT, AugmentOptions, FineTuneOptions, fine_tune
from ..heads import HeadFit, HeadOutputs, ImageClassifier, activate, fit_head, head_logits
from ..image_inputs import ImageInputs
from ..quantize import CLASSIFIER_INT8, MAX_INT8_DROP, MIN_TOP1_AGREEMENT, quantize_int8, save_variant
from ..selection import Candidate, FeaturePass, Selection, affordable_passes, linear_candidates, select
from ..splits import Split, rarest_label_groups, stratified_split
from .base import ExportInputs, Fitted, Prepared, RunContext, Task, Validation, input_tensors

log = logging.getLogger(__name__)
CHECK_IMAGES = 256
# A threshold is chosen on at least this many images' predictions; with fewer, the default (below).
MIN_THRESHOLD_IMAGES = 30
# The `uncertain` (and the face preset's `unknown`) threshold without enough predictions to choose one:
# an answer the model gives less than even odds is flagged (answered `unknown`).
DEFAULT_CONFIDENCE_THRESHOLD = 0.5
DEFAULT_TAG_THRESHOLD = 0.5
# The name the quantized backbone's output and the float head's input share in the INT8 variant.
FEATURES_NAME = "features"


@dataclass
class ClassificationData(Prepared):
    # Per image: the class index (-1: `unknown`, face preset), or a row of 0/1 per tag (multilabel).
    targets: np.ndarray
    spec: PreprocessSpec  # the exported model's preprocessing
    inputs: ImageInputs  # images decoded for `spec`
    features: dict[str, np.ndarray]  # by image id: the model's features (quick: the chosen candidate's)
    feature_dim: int
    test: list[int]  # the test images that have an input (face preset: a face)
    # Quick mode: the images cross-validated (every image with an input outside `test`), their folds,
    # the backbone passes computed, near-duplicate groups (per image) and the report on them.
    cv: list[int] = field(default_factory=list)
    plan: FoldPlan | None = None
    passes: list[FeaturePass] = field(default_factory=list)
    sets: FeatureSets | None = None
    groups: np.ndarray | None = None
    duplicates: dict[str, Any] = field(default_factory=dict)
    kept_out: list[int] = field(default_factory=list)  # test images with a near-duplicate trained on
    no_face: list[int] = field(default_factory=list)  # face preset: images the detector found no face in
    no_face_test: list[int] = field(default_factory=list)  # those of them in the test part

    def features_of(self, indices: Sequence[int], features: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The images' features: the model's, or those of `features` (another feature set)."""
        if not len(indices):
            return np.zeros((0, self.feature_dim), np.float32)
        vectors = self.features if features is None else features
        return np.stack([vectors[self.records[i].id] for i in indices])

    def images_of(self, indices: Sequence[int], desc: str = "download images") -> list[Image.Image]:
        return self.inputs.present([self.records[i] for i in indices], desc)


@dataclass
class FittedClassifier(Fitted):
    backbone: nn.Module | None = None  # advanced: the pretrained model with its upper blocks fine-tuned
    head: nn.Module | None = None  # on the model's features (quick: the raw features of the chosen candidate)
    # Advanced mode: the fine-tuned blocks, and the frozen trunk below them that feeds them.
    top: Top | None = None
    trunk: FrozenRunner | None = None
    head_epochs: int | None = None  # MLP: the epoch kept, what a refit trains for
    # Quick mode: the chosen candidate and its cross-validation (out-of-fold predictions, fold heads).
    candidate: Candidate | None = None
    cv: CrossValidated | None = None
    selection: Selection | None = None


class ClassificationTask(Task[ClassificationData, FittedClassifier]):
    """What multiclass, multilabel and face identification share; the subclasses say how labels
    become targets and how predictions become thresholds and metrics. Quick mode cross-validates
    on every labeled image; advanced mode holds images out (`prepare` and `fit` dispatch)."""

    prepare_stage = "features"
    multilabel = False
    face_margin: float | None = None  # face preset: crop the largest face, widened by this margin
    augment = AugmentOptions()
    threshold_name = ""

    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.head = LINEAR if self.options.head == AUTO else self.options.head

    @property
    def quick(self) -> bool:
        return self.options.mode == QUICK

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

    def scored(self, data: ClassificationData, positions: Sequence[int]) -> list[int]:
        """The images an estimate counts: all but those without a class to learn (`unknown`)."""
        return self.known(data, positions)

    def known(self, data: ClassificationData, indices: Sequence[int]) -> list[int]:
        """The images among `indices` with a class to learn (all but the face preset's `unknown`)."""
        return [i for i in indices if self.multilabel or data.targets[i] >= 0]

    # -- prepare ---------------------------------------------------------------------------
    def prepare(self) -> ClassificationData:
        records = self.run.project.records
        self.labels_and_targets(records)  # fail fast, before any download, on labels that cannot train a model
        return self._prepare_quick(records) if self.quick else self._prepare_held_out(records)

    def _feature_sets(self) -> FeatureSets:
        return FeatureSets(self.run.loader, self.run.cache_dir, threads=self.options.cpu_threads,
                           progress=self.options.progress, face_margin=self.face_margin, report=self.run.report)

    def _usable(self, records: Sequence[ImageRecord], inputs: ImageInputs) -> list[ImageRecord]:
        skipped = {s["id"] for s in self.run.loader.skipped}
        usable = [r for r in records if r.id not in skipped]
        if not usable:
            raise TrainingDataError("none of the labeled images could be read; see the skipped images")
        return usable

    def _prepare_quick(self, records: Sequence[ImageRecord]) -> ClassificationData:
        options = self.options
        sets = self._feature_sets()
        backbones = BACKBONES if options.backbone == AUTO else (options.backbone,)
        # The passes follow the data (how many images), never the machine's speed.
        passes = affordable_passes(backbones, len(records), options.selection_budget)
        for feature_pass in passes:
            sets.compute(feature_pass, records)
        first = passes[0]
        inputs = sets.inputs(pass_spec(first))
        usable = self._usable(records, inputs)
        labels, targets = self.labels_and_targets(usable)
        explicit = [r.split for r in usable]
        if options.evaluation == HELD_OUT:
            split = stratified_split(self.strata(usable), explicit, test_fraction=options.test_fraction,
                                     validation_fraction=0.0, seed=options.seed, never_train=self._never_train())
            test = split.test
        elif options.evaluation == AUTO:
            test = [i for i, part in enumerate(explicit) if part == "test"]
        else:
            test = []
        with_input = [i for i, r in enumerate(usable) if inputs.has_input(r)]
        no_face = [i for i, r in enumerate(usable) if not inputs.has_input(r)]
        test_set = set(test)
        cv = [i for i in with_input if i not in test_set]
        has_input = set(with_input)
        data = ClassificationData(labels=labels, records=usable, split=Split(train=cv, test=sorted(test)),
                                  targets=targets, spec=pass_spec(first), inputs=inputs, features=sets.features[first],
                                  feature_dim=backbone_spec(first.backbone).feature_dim,
                                  test=[i for i in sorted(test) if i in has_input], cv=cv, passes=passes, sets=sets,
                                  no_face=no_face, no_face_test=[i for i in no_face if i in test_set])
        test = data.test
        self._report_no_face(data)
        self._require_every_label_trained(data, cv)
        strata = self.strata([usable[i] for i in cv])
        counts = Counter(strata)
        if min(counts.values()) < 2:
            rare = sorted(name for name, n in counts.items() if n < 2)
            raise TrainingDataError(f"{', '.join(map(repr, rare))} ha{'s' if len(rare) == 1 else 've'} one image to "
                                    "learn from; label at least two images of every class")
        # Near-duplicates, from the cheapest backbone's features of every image with an input.
        positions = sorted({*cv, *test})
        pairs = [(positions[i], positions[j], s)
                 for i, j, s in similar_pairs(data.features_of(positions, sets.features[first]))]
        data.groups = duplicate_groups(len(usable), pairs)
        data.kept_out = near_duplicates_of(data.groups, test, cv)
        data.duplicates = duplicate_report(usable, pairs, data.groups, kept_out=data.kept_out)
        if pairs:
            log.info("%d near-duplicate pairs in %d groups; %d test images kept out of the estimate", len(pairs),
                     data.duplicates["groups"], len(data.kept_out))
        data.plan = plan_folds(strata, [int(data.groups[i]) for i in cv], seed=options.seed)
        smallest = min(counts.values())
        if smallest < 6:
            message = (f"few images per class (the smallest has {smallest}): metrics and thresholds are estimated "
                       f"by {data.plan.k}-fold cross-validation; label more images for metrics that can be trusted")
            log.warning(message)
            self.run.report.setdefault("warnings", []).append(message)
        return data

    def _never_train(self) -> frozenset[str]:
        return frozenset({UNKNOWN_LABEL}) if self.face_margin is not None else frozenset()

    def _report_no_face(self, data: ClassificationData) -> None:
        if self.face_margin is None:
            return
        in_test = set(data.no_face_test)
        no_face = [{"id": data.records[i].id, "filename": data.records[i].filename,
                    "split": "test" if i in in_test else "train"} for i in data.no_face]
        self.run.report["no_face"] = no_face
        if no_face:
            log.warning("%d image(s) show no face the detector can find; listed in the run's report", len(no_face))

    def _require_every_label_trained(self, data: ClassificationData, train: Sequence[int]) -> None:
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

    # -- fit -------------------------------------------------------------------------------
    def fit(self, data: ClassificationData) -> FittedClassifier:
        return self._fit_quick(data) if self.quick else self._fit_held_out(data)

    def _matrix(self, data: ClassificationData, passes: Sequence[FeaturePass], positions: Sequence[int],
                features: dict[FeaturePass, dict[str, np.ndarray]] | None = None) -> np.ndarray:
        """A candidate's features of the images: per member, its views averaged; members side by side."""
        found = features if features is not None else data.sets.features if data.sets else {}
        members: dict[tuple[str, int | None], list[FeaturePass]] = {}
        for feature_pass in passes:
            members.setdefault((feature_pass.backbone, feature_pass.input_size), []).append(feature_pass)
        blocks = [np.mean([data.features_of(positions, found[p]) for p in views], axis=0) for views in members.values()]
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def _fit_quick(self, data: ClassificationData) -> FittedClassifier:
        options = self.options
        assert data.plan is not None and data.sets is not None
        cv = data.cv
        targets = data.targets[cv]
        trainable = np.array([self.multilabel or t >= 0 for t in targets], bool)
        head_kind = MLP if options.head == MLP else LINEAR
        candidates = linear_candidates(data.passes, head_kind)
        selection = select(candidates, lambda c: c.transform(self._matrix(data, c.passes(), cv)), targets, trainable,
                           data.plan,
                           num_outputs=len(data.labels), multilabel=self.multilabel, seed=options.seed,
                           weight_decay=options.weight_decay, mlp=options.head == AUTO, images=len(cv))
        chosen = selection.chosen
        candidate, result = chosen.candidate, chosen.result
        served = candidate.passes(served=True)
        if candidate.resized_members:
            # The chosen ensemble's smaller members resize inside the served graph: their features again,
            # as the file computes them, and the candidate cross-validated on those.
            for feature_pass in served:
                data.sets.compute(feature_pass, data.records)
            result = cross_validate(candidate.transform(self._matrix(data, served, cv)), targets, trainable, data.plan,
                                    kind=candidate.head,
                                    num_outputs=len(data.labels), multilabel=self.multilabel, seed=options.seed,
                                    weight_decays=[result.weight_decay], keep_heads=True)
        # The served input is the largest member's; the card names that backbone and lists them all.
        self.backbone = max(candidate.backbones, key=lambda b: backbone_spec(b).image_size)
        self.head = candidate.head
        positions = sorted({*cv, *data.test})
        chosen_features = candidate.transform(self._matrix(data, served, positions))
        data.features = {data.records[i].id: row for i, row in zip(positions, chosen_features, strict=True)}
        data.feature_dim = chosen_features.shape[1]
        data.spec = default_preprocess(self.backbone)
        data.inputs = data.sets.inputs(data.spec)
        train = [cv[i] for i in np.flatnonzero(trainable)]
        fit = self._fit_final(data, train, candidate.head, result.weight_decay)
        record = selection.record(metric="exact-match accuracy" if self.multilabel else "accuracy",
                                  passes=data.passes, budget=options.selection_budget, images=len(cv))
        self.run.report["selection"] = {"chosen": record["chosen"], "best": record["best"]}
        log.info("chose %s by %d x %d-fold cross-validation of %d candidates on %d images: %s", candidate.name,
                 len(data.plan.repeats), data.plan.k, len(selection.evaluated), len(cv),
                 ", ".join(f"{e.candidate.name} {e.result.score:.4f}±{e.result.standard_error:.4f}"
                           for e in selection.evaluated))
        params = {"backbone": self.backbone, "backbones": list(candidate.backbones), "head": candidate.head,
                  "flip": candidate.flip, "sqrt": candidate.root, "weight_decay": result.weight_decay,
                  "folds": data.plan.k, "repeats": len(data.plan.repeats), "selection": record,
                  "feature_dim": data.feature_dim, "preprocess": data.spec.to_json()}
        if not data.test:  # the model learned from every labeled image (with test images: `refit` decides)
            params["refit_images"] = len(train)
        return FittedClassifier(history=self._fold_curve(data, served, candidate.head, result.weight_decay),
                                params=params, head=fit.head, head_epochs=fit.epochs, candidate=candidate, cv=result,
                                selection=selection)

    def _fit_final(self, data: ClassificationData, train: Sequence[int], kind: str, decay: float) -> HeadFit:
        """The head on every image in `train` at the chosen weight decay (linear: in the images' span)."""
        x = data.features_of(train)
        y = data.targets[list(train)]
        if kind != LINEAR:
            return fit_head(x, y, x[:0], y[:0], kind=kind, num_outputs=len(data.labels), multilabel=self.multilabel,
                            seed=self.options.seed, weight_decay=decay)
        span = Span(x)
        fit = fit_head(span.coords, y, span.coords[:0], y[:0], kind=LINEAR, num_outputs=len(data.labels),
                       multilabel=self.multilabel, seed=self.options.seed, weight_decay=decay)
        return HeadFit(head=span.raw_head(fit.head), weight_decay=decay, history=fit.history)

    def _fold_curve(self, data: ClassificationData, passes: Sequence[FeaturePass], kind: str,
                    decay: float) -> list[dict[str, Any]]:
        """The training curve of the first fold's fit, its held-out images as validation: what the
        chart of a version shows (every fold's fit looks alike)."""
        assert data.plan is not None
        held = set(data.plan.repeats[0][0].tolist())
        cv = data.cv
        train = [cv[i] for i in range(len(cv)) if i not in held and (self.multilabel or data.targets[cv[i]] >= 0)]
        validation = self.known(data, [cv[i] for i in sorted(held)])
        x, vx = data.features_of(train), data.features_of(validation)
        if kind == LINEAR:
            span = Span(np.concatenate([x, vx]))
            x, vx = span.coords[:len(x)], span.coords[len(x):]
        fit = fit_head(x, data.targets[train], vx, data.targets[validation], kind=kind, num_outputs=len(data.labels),
                       multilabel=self.multilabel, seed=self.options.seed, weight_decay=decay)
        return fit.history

    # -- validate --------------------------------------------------------------------------
    def validate(self, data: ClassificationData, model: FittedClassifier) -> Validation:
        if model.cv is None:
            return self._validate_held_out(data, model)
        assert data.plan is not None
        cv = data.cv
        oof = model.cv.probabilities
        if data.test:
            test_probs = self.probabilities(data, model, data.test)
            validation = self.measure(data, (cv, oof), (data.test, test_probs), "out-of-fold predictions")
            method = HELD_OUT
        else:
            validation = self.measure(data, (cv, oof), (cv, oof), "out-of-fold predictions")
            method = CROSS_VALIDATION
        metrics = validation.metrics
        metrics["evaluation"] = {"method": method, "folds": data.plan.k, "repeats": len(data.plan.repeats),
                                 "images": len(cv), **({"test_images": len(data.test)} if data.test else {})}
        out_of_fold = self._out_of_fold_estimate(data, model, validation)
        chosen = out_of_fold
        if data.test:
            kept = set(data.kept_out)
            judged = [i for i in self.scored(data, data.test) if i not in kept]
            rows = [data.test.index(i) for i in judged]
            held_out = estimate(self.right(data, judged, test_probs[rows], validation.thresholds), source="held-out",
                                metric=out_of_fold["metric"],
                                extra={"near_duplicates_kept_out": len(data.kept_out)})
            metrics["estimate_held_out"] = held_out
            metrics["estimate_out_of_fold"] = out_of_fold
            chosen = held_out if held_out["images"] > out_of_fold["images"] else out_of_fold
        metrics["estimate"] = chosen
        if not data.test:
            # The headline is the estimate (each repeat's single-model answers); the per-class numbers,
            # curves and confusion matrix come from the predictions averaged over the repeats.
            metrics["accuracy"] = out_of_fold["value"]
            metrics["per_class_from"] = "out-of-fold predictions averaged over the repeats"
        metrics["near_duplicates"] = data.duplicates
        positions = [cv[i] for i in range(len(cv))]
        probabilities = np.zeros((len(data.records), len(data.labels)), np.float32)
        probabilities[positions] = oof
        issues = label_issues(data.records, data.labels, data.targets, probabilities, positions,
                              multilabel=self.multilabel)
        metrics["label_issues"] = {"count": len(issues), "checked": len(self.known(data, cv)),
                                   "threshold": LABEL_ISSUE_PROBABILITY, "from": "out-of-fold predictions"}
        validation.label_issues = issues
        return validation

    def _out_of_fold_estimate(self, data: ClassificationData, model: FittedClassifier,
                              validation: Validation) -> dict[str, Any]:
        """The share of right out-of-fold answers, the mean over the repeats, with its interval."""
        assert model.cv is not None and data.plan is not None
        cv = data.cv
        counted = set(self.scored(data, cv))
        scored = [i for i, position in enumerate(cv) if position in counted]
        right = []
        for oof, folds in zip(model.cv.out_of_fold, data.plan.repeats, strict=True):
            if self.multilabel:
                # Each fold judged with thresholds chosen on the other folds: tuned and judged on the same
                # predictions, per-tag thresholds would flatter the exact-match accuracy.
                cuts = cross_fitted_thresholds(oof, data.targets[cv], folds, self._tag_cuts)
                right.append(correct(oof, data.targets[cv], multilabel=True, cut=cuts)[scored])
            else:
                right.append(self.right(data, [cv[i] for i in scored], oof[scored], validation.thresholds))
        return estimate(np.stack(right), source="out-of-fold",
                        metric="exact-match accuracy" if self.multilabel else "accuracy",
                        extra={"folds": data.plan.k, "repeats": len(data.plan.repeats),
                               "fold_spread": round(model.cv.spread, 6),
                               "standard_error": round(model.cv.standard_error, 6)})

    def _tag_cuts(self, targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        return np.ones(probabilities.shape[1]) * 0.5

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

    def refit(self, data: ClassificationData, model: FittedClassifier) -> FittedClassifier | None:
        """Quick mode with test images: the head again on every labeled image (test images too) with the
        settings chosen. Without test images the model already learned from every image."""
        if not self.options.refit or not self.quick or not data.test or model.candidate is None:
            return None
        everything = self.known(data, sorted({*data.cv, *data.test}))
        fit = self._fit_final(data, everything, model.candidate.head, float(model.params["weight_decay"]))
        log.info("refit the head on all %d labeled images (evaluated on %d held-out ones)", len(everything),
                 len(data.test))
        model.head = fit.head
        model.params = {**model.params, "refit_images": len(everything)}
        return model

    # -- export ----------------------------------------------------------------------------
    def _check_positions(self, data: ClassificationData) -> tuple[str, list[int]]:
        if self.quick:
            return ("out-of-fold" if not data.test else "test", (data.test or data.cv)[:CHECK_IMAGES])
        source, check = next((name, part) for name, part in (("validation", data.split.validation),
                                                             ("test", data.test), ("training", data.split.train))
                             if part or name == "training")
        return source, check[:CHECK_IMAGES]

    def export_inputs(self, data: ClassificationData, model: FittedClassifier) -> ExportInputs:
        assert model.head is not None
        source, check = self._check_positions(data)
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
        assert data.sets is not None and model.head is not None
        with tempfile.TemporaryDirectory(prefix="visiondock-export-") as workdir:
            head = export_graph(HeadOutputs(model.head, multilabel=self.multilabel), torch.zeros(1, data.feature_dim),
                                Path(workdir) / "head.onnx", input_name=FEATURES_NAME,
                                output_names=exported.output_names)
            members = [data.sets.graph(p) for p in self._members(model)]
            compose_classifier(members, head, path, flip=model.candidate.flip, root=model.candidate.root,
                               input_name=card.input_name)
        write_card(path, card)
        return path

    def _members(self, model: FittedClassifier) -> list[FeaturePass]:
        """The served candidate's member passes (plain views; the file mirrors for itself)."""
        assert model.candidate is not None
        return [p for p in model.candidate.passes(served=True) if not p.mirrored]

    def check_export(self, exported: ExportInputs, path: Path, card: ModelCard, images: int) -> dict[str, Any]:
        if exported.module is not None:
            return super().check_export(exported, path, card, images)
        assert exported.check_expected is not None
        # Quick: the file against the head on the features it was fitted and judged on.
        inputs, expected = exported.check_inputs[:images], exported.check_expected[:images]
        if not len(inputs):
            raise ParityError("no images to check the exported model on; nothing was registered")
        actual = run_session(session(path, self.options.cpu_threads), inputs)[0]
        max_abs = float(np.abs(expected - actual).max())
        agreement = top1_agreement(expected, actual)
        if max_abs > 1e-3 or agreement < 1.0:
            raise ParityError(f"the exported file differs from the model it was judged as: max |diff| {max_abs:.2e}, "
                              f"top-1 agreement {agreement:.3f}; nothing was registered")
        return {"max_abs_diff": max_abs, "top1_agreement": agreement, "checked": len(inputs),
                "compared_with": "the head on the cached features"}

    def check_parity(self, module: nn.Module, path: Path, inputs: np.ndarray, card: ModelCard) -> dict[str, Any]:
        return check_parity(module, path, inputs)

    def _calibration_images(self, data: ClassificationData) -> list[int]:
        # The training images with the lowest SHA-256: a fair sample that stays the same when images are
        # added (a new one enters only if its hash is lower), so the quantized backbone stays cached.
        train = self.known(data, data.cv) if self.quick else data.split.train
        return sorted(train, key=lambda i: data.records[i].id)[:CLASSIFIER_INT8.calibration_images]

    def calibration_inputs(self, data: ClassificationData, exported: ExportInputs) -> np.ndarray:
        return input_tensors(data.images_of(self._calibration_images(data)), data.spec)

    def _int8_member(self, data: ClassificationData, feature_pass: FeaturePass) -> Path:
        """The pass's quantized graph, from the cache or quantized now (and kept there)."""
        assert data.sets is not None
        chosen = self._calibration_images(data)
        spec = pass_spec(feature_pass)
        recipe = {"pass": [feature_pass.backbone, feature_pass.input_size], "preprocess": spec.to_json(),
                  "crop": data.sets.crop, "calibration": [data.records[i].id for i in chosen],
                  "settings": CLASSIFIER_INT8.recipe(), "onnxruntime": ort.__version__, "torch": torch.__version__,
                  "format": CACHE_FORMAT}
        target = self.run.cache_dir / "models" / int8_recipe_name(feature_pass, recipe)
        if target.exists():
            mark_used(target)
            self.run.report.setdefault("int8_backbone", "cached")
            log.info("INT8 backbone from the cache (%s)", target.name)
            return target
        self.run.report["int8_backbone"] = "quantized"
        log.info("quantizing the %s backbone on %d images", feature_pass.backbone, len(chosen))
        calibration = input_tensors(data.sets.inputs(spec).present([data.records[i] for i in chosen]), spec)
        fp32 = data.sets.graph(feature_pass)
        atomic_write(target, lambda path: quantize_int8(fp32, path, calibration, float_feeding_layer=False,
                                                         settings=CLASSIFIER_INT8))
        return target

    def int8_model(self, data: ClassificationData, model: FittedClassifier, exported: ExportInputs,
                   fp32_path: Path, int8_path: Path) -> Path:
        """Quick mode: the quantized frozen backbones (cached) under the float head; advanced mode
        fine-tunes the backbone, so the whole graph is quantized."""
        if model.candidate is None:
            return super().int8_model(data, model, exported, fp32_path, int8_path)
        assert model.head is not None
        members = [self._int8_member(data, p) for p in self._members(model)]
        with tempfile.TemporaryDirectory(prefix="visiondock-int8-") as workdir:
            head = export_graph(HeadOutputs(model.head, multilabel=self.multilabel), torch.zeros(1, data.feature_dim),
                                Path(workdir) / "head.onnx", input_name=FEATURES_NAME,
                                output_names=exported.output_names)
            composed = compose_classifier(members, head, Path(workdir) / "composed.onnx", flip=model.candidate.flip,
                                          root=model.candidate.root)
            save_variant(onnx.load(str(composed)), onnx.load(str(fp32_path)), int8_path, INT8)
        return int8_path

    def variant_agreement(self, data: ClassificationData, exported: ExportInputs, validation: Validation,
                          fp32_path: Path, variant_path: Path, variant: str) -> dict[str, Any]:
        model = exported.fitted
        assert isinstance(model, FittedClassifier)
        agreement = self._check_agreement(data, exported, validation, fp32_path, variant_path)
        if variant != INT8:
            return agreement
        judged = self._int8_out_of_fold(data, model, validation) if model.cv is not None else \
            self._int8_on_labeled(data, validation, fp32_path, variant_path)
        return {**agreement, **judged, "accepted": judged["keeps_accuracy"]}

    def _check_agreement(self, data: ClassificationData, exported: ExportInputs, validation: Validation,
                         fp32_path: Path, variant_path: Path) -> dict[str, Any]:
        """How the variant file answers against fp32 on the check images (fp16: what decides)."""
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

    def _keeps(self, fp32_right: np.ndarray, int8_right: np.ndarray, judged_on: str) -> dict[str, Any]:
        """INT8 keeps the accuracy when the 95 % interval of its difference from fp32 reaches zero and the
        measured drop is at most MAX_INT8_DROP (a few images of a small set must not hide a real loss)."""
        difference = paired_difference(fp32_right, int8_right)
        keeps = difference["interval"][1] >= 0 and difference["difference"] >= -MAX_INT8_DROP
        return {"keeps_accuracy": bool(keeps), "accuracy_fp32": round(float(fp32_right.mean()), 6),
                "accuracy_int8": round(float(int8_right.mean()), 6), "difference": difference["difference"],
                "difference_interval": difference["interval"], "images": difference["images"],
                "gained": difference["gained"], "lost": difference["lost"], "max_drop": MAX_INT8_DROP,
                "judged_on": judged_on, "calibration": CLASSIFIER_INT8.recipe()}

    def _int8_out_of_fold(self, data: ClassificationData, model: FittedClassifier,
                          validation: Validation) -> dict[str, Any]:
        """The INT8 backbones' features of every cross-validated image through the same fold heads:
        out-of-fold accuracy of INT8 against fp32 on the same images."""
        assert model.cv is not None and data.plan is not None and data.sets is not None
        cv = data.cv
        served = model.candidate.passes(served=True) if model.candidate else []
        records = [data.records[i] for i in cv]
        features = {p: data.sets.compute_int8(p, self._int8_member(data, FeaturePass(p.backbone, False, p.input_size)),
                                              records) for p in served}
        assert model.candidate is not None
        int8 = predict_out_of_fold(model.cv.heads, data.plan, model.candidate.transform(self._matrix(data, served, cv,
                                                                                                     features)),
                                   multilabel=self.multilabel).mean(axis=0)
        fp32 = model.cv.probabilities
        counted = set(self.scored(data, cv))
        scored = [i for i, position in enumerate(cv) if position in counted]
        positions = [cv[i] for i in scored]
        fp32_right = self.right(data, positions, fp32[scored], validation.thresholds)
        int8_right = self.right(data, positions, int8[scored], validation.thresholds)
        result = self._keeps(fp32_right, int8_right, f"out-of-fold predictions of {len(scored)} images")
        result["out_of_fold_top1_agreement"] = round(top1_agreement(fp32, int8), 6)
        return result

    def _int8_on_labeled(self, data: ClassificationData, validation: Validation, fp32_path: Path,
                         variant_path: Path) -> dict[str, Any]:
        """Advanced mode: both files on every labeled image, judged against the labels."""
        positions = self.scored(data, sorted({*data.split.train, *data.split.validation, *data.test}))
        images = data.images_of(positions, "INT8 check")
        positions = positions[:len(images)]
        inputs = input_tensors(images, data.spec)
        threads = self.options.cpu_threads
        fp32 = run_session(session(fp32_path, threads), inputs)[0]
        int8 = run_session(session(variant_path, threads), inputs)[0]
        result = self._keeps(self.right(data, positions, fp32, validation.thresholds),
                             self.right(data, positions, int8, validation.thresholds),
                             f"every labeled image ({len(positions)}; most were trained on)")
        result["labeled_top1_agreement"] = round(top1_agreement(fp32, int8), 6)
        return result

    # -- advanced mode: a held-out split and fine-tuning --------------------------------------
    def _prepare_held_out(self, records: Sequence[ImageRecord]) -> ClassificationData:
        sets = self._feature_sets()
        feature_pass = FeaturePass(self.backbone)
        sets.compute(feature_pass, records)
        spec = pass_spec(feature_pass)
        inputs = sets.inputs(spec)
        inputs.get(records)  # fine-tuning needs every image's pixels
        usable = self._usable(records, inputs)
        labels, targets = self.labels_and_targets(usable)
        split = stratified_split(self.strata(usable), [r.split for r in usable],
                                 test_fraction=self.options.test_fraction,
                                 validation_fraction=self.options.validation_fraction, seed=self.options.seed,
                                 never_train=self._never_train())
        data = ClassificationData(labels=labels, records=usable, split=split, targets=targets, spec=spec,
                                  inputs=inputs, features=sets.features[feature_pass],
                                  feature_dim=backbone_spec(self.backbone).feature_dim, test=[], sets=sets,
                                  no_face=[i for i, r in enumerate(usable) if not inputs.has_input(r)])
        data.no_face_test = [i for i in data.no_face if i in set(split.test)]
        self._report_no_face(data)
        has = set(range(len(usable))) - set(data.no_face)
        split.train = [i for i in split.train if i in has and (self.multilabel or targets[i] >= 0)]
        split.validation = [i for i in split.validation if i in has]
        data.test = [i for i in split.test if i in has]
        self._require_every_label_trained(data, split.train)
        if not data.test:
            raise TrainingDataError("no images left for the held-out test split; label more images")
        if self.options.backbone == AUTO or self.options.head == AUTO:
            self.run.report["selection"] = {"backbone": self.backbone, "head": self.head,
                                            "skipped": f"choosing is for quick mode; {self.options.mode} mode "
                                                       "fine-tunes the default"}
        return data

    def _fit_held_out(self, data: ClassificationData) -> FittedClassifier:
        options = self.options
        train, validation = data.split.train, self.known(data, data.split.validation)
        fit = fit_head(data.features_of(train), data.targets[train], data.features_of(validation),
                       data.targets[validation], kind=self.head, num_outputs=len(data.labels),
                       multilabel=self.multilabel, seed=options.seed, weight_decay=options.weight_decay)
        model = FittedClassifier(history=fit.history, params={"backbone": self.backbone, "head": self.head,
                                                              "weight_decay": fit.weight_decay},
                                 backbone=load_pretrained(self.backbone), head=fit.head, head_epochs=fit.epochs)
        if options.mode == ADVANCED:
            self._fine_tune(data, model, train, validation)
        model.params |= {"preprocess": data.spec.to_json(), "feature_dim": data.feature_dim}
        return model

    def _validate_held_out(self, data: ClassificationData, model: FittedClassifier) -> Validation:
        validation_images = data.split.validation
        val_probs = self.probabilities(data, model, validation_images)
        test_probs = self.probabilities(data, model, data.test)
        validation = self.measure(data, (validation_images, val_probs), (data.test, test_probs), "validation")
        validation.metrics["evaluation"] = {"method": HELD_OUT, "test_images": len(data.test)}
        judged = self.scored(data, data.test)
        rows = [data.test.index(i) for i in judged]
        validation.metrics["estimate"] = estimate(
            self.right(data, judged, test_probs[rows], validation.thresholds), source="held-out",
            metric="exact-match accuracy" if self.multilabel else "accuracy")
        return validation

    def _fine_tune(self, data: ClassificationData, model: FittedClassifier, train: list[int],
                   validation: list[int]) -> None:
        """Fine-tune the backbone's upper blocks and the head in place, starting from the quick head."""
        assert model.backbone is not None and model.head is not None
        options = self.options
        start = top_start(model.backbone, options.fine_tune_stages)
        path = self.run.cache_dir / "models" / f"{self.backbone}-trunk{start}-{data.spec.size}-f{CACHE_FORMAT}.onnx"
        trunk = FrozenRunner(lambda: Trunk(load_pretrained(self.backbone), start), input_size=data.spec.size,
                             threads=options.cpu_threads, onnx_path=path)
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

    def _tag_cuts(self, targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
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
