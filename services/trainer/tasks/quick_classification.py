"""Quick mode of the classification tasks: every labeled image cross-validated, the model chosen by it.

Pooled backbone features (cached per image and pass, `feature_sets.py`); candidates (backbones,
ensembles, flip, square-rooted features, head) compared by repeated stratified k-fold
cross-validation over every labeled image (`selection.py`, `crossval.py`), the chosen one then
fitted on all of them. The out-of-fold predictions give the thresholds, the metrics and the estimate
of the accuracy on new photos with its interval; they also find likely label errors, and
near-duplicate images are kept in one fold (`audit.py`). Explicit test images (or `--evaluation
held-out`) are judged apart and, with `--refit`, learned from once judged.

The task (`classification.ClassificationTask`) says what its labels mean: targets, strata,
thresholds and metrics (`measure`), and which answers are right.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from visiondock.vocabulary import AUTO, BACKBONES, CROSS_VALIDATION, HELD_OUT, LINEAR, MLP

from ..audit import (
    LABEL_ISSUE_PROBABILITY,
    duplicate_groups,
    duplicate_report,
    label_issues,
    near_duplicates_of,
    similar_pairs,
)
from ..backbone import backbone_spec, default_preprocess
from ..crossval import Span, correct, cross_fitted_thresholds, cross_validate, estimate, linear, plan_folds
from ..data import ImageRecord, TrainingDataError
from ..feature_sets import pass_spec
from ..heads import HeadFit, fit_head
from ..selection import FeaturePass, affordable_passes, linear_candidates, select
from ..splits import Split, stratified_split
from .base import Validation
from .classifier_data import CHECK_IMAGES, ClassificationData, FittedClassifier

if TYPE_CHECKING:
    from .classification import ClassificationTask

log = logging.getLogger(__name__)


def feature_matrix(data: ClassificationData, passes: Sequence[FeaturePass], positions: Sequence[int],
                   features: dict[FeaturePass, dict[str, np.ndarray]] | None = None) -> np.ndarray:
    """A candidate's features of the images: per member, its views averaged; members side by side."""
    found = features if features is not None else data.sets.features if data.sets else {}
    members: dict[tuple[str, int | None], list[FeaturePass]] = {}
    for feature_pass in passes:
        members.setdefault((feature_pass.backbone, feature_pass.input_size), []).append(feature_pass)
    blocks = [np.mean([data.features_of(positions, found[p]) for p in views], axis=0) for views in members.values()]
    return np.concatenate(blocks, axis=1).astype(np.float32)


class QuickClassification:
    def __init__(self, task: ClassificationTask) -> None:
        self.task = task
        self.options = task.options

    # -- prepare ---------------------------------------------------------------------------
    def prepare(self, records: Sequence[ImageRecord]) -> ClassificationData:
        task, options = self.task, self.options
        sets = task.feature_sets()
        backbones = BACKBONES if options.backbone == AUTO else (options.backbone,)
        # The passes follow the data (how many images), never the machine's speed.
        passes = affordable_passes(backbones, len(records), options.selection_budget)
        for feature_pass in passes:
            sets.compute(feature_pass, records)
        first = passes[0]
        inputs = sets.inputs(pass_spec(first))
        usable = task.usable(records)
        labels, targets = task.labels_and_targets(usable)
        explicit = [r.split for r in usable]
        if options.evaluation == HELD_OUT:
            split = stratified_split(task.strata(usable), explicit, test_fraction=options.test_fraction,
                                     validation_fraction=0.0, seed=options.seed, never_train=task.never_train())
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
        task.report_no_face(data)
        task.require_every_label_trained(data, cv)
        strata = task.strata([usable[i] for i in cv])
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
            task.run.report.setdefault("warnings", []).append(message)
        return data

    # -- fit -------------------------------------------------------------------------------
    def fit(self, data: ClassificationData) -> FittedClassifier:
        task, options = self.task, self.options
        assert data.plan is not None and data.sets is not None
        cv = data.cv
        targets = data.targets[cv]
        trainable = np.array([task.multilabel or t >= 0 for t in targets], bool)
        head_kind = MLP if options.head == MLP else LINEAR
        candidates = linear_candidates(data.passes, head_kind)
        selection = select(candidates, lambda c: c.transform(feature_matrix(data, c.passes(), cv)), targets,
                           trainable, data.plan,
                           num_outputs=len(data.labels), multilabel=task.multilabel, seed=options.seed,
                           weight_decay=options.weight_decay, mlp=options.head == AUTO, images=len(cv))
        chosen = selection.chosen
        candidate, result = chosen.candidate, chosen.result
        served = candidate.passes(served=True)
        if candidate.resized_members:
            # The chosen ensemble's smaller members resize inside the served graph: their features again,
            # as the file computes them, and the candidate cross-validated on those.
            for feature_pass in served:
                data.sets.compute(feature_pass, data.records)
            result = cross_validate(candidate.transform(feature_matrix(data, served, cv)), targets, trainable,
                                    data.plan,
                                    kind=candidate.head, num_outputs=len(data.labels), multilabel=task.multilabel,
                                    seed=options.seed, weight_decays=[result.weight_decay], keep_heads=True)
        # The served input is the largest member's; the card names that backbone and lists them all.
        task.backbone = max(candidate.backbones, key=lambda b: backbone_spec(b).image_size)
        task.head = candidate.head
        positions = sorted({*cv, *data.test})
        chosen_features = candidate.transform(feature_matrix(data, served, positions))
        data.features = {data.records[i].id: row for i, row in zip(positions, chosen_features, strict=True)}
        data.feature_dim = chosen_features.shape[1]
        data.spec = default_preprocess(task.backbone)
        data.inputs = data.sets.inputs(data.spec)
        train = [cv[i] for i in np.flatnonzero(trainable)]
        fit = self._fit_final(data, train, candidate.head, result.weight_decay)
        record = selection.record(metric=task.metric_name, passes=data.passes, budget=options.selection_budget,
                                  images=len(cv))
        task.run.report["selection"] = {"chosen": record["chosen"], "best": record["best"]}
        log.info("chose %s by %d x %d-fold cross-validation of %d candidates on %d images: %s", candidate.name,
                 len(data.plan.repeats), data.plan.k, len(selection.evaluated), len(cv),
                 ", ".join(f"{e.candidate.name} {e.result.score:.4f}±{e.result.standard_error:.4f}"
                           for e in selection.evaluated))
        params = {"backbone": task.backbone, "backbones": list(candidate.backbones), "head": candidate.head,
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
        multilabel, seed = self.task.multilabel, self.options.seed
        x = data.features_of(train)
        y = data.targets[list(train)]
        if kind != LINEAR:
            return fit_head(x, y, x[:0], y[:0], kind=kind, num_outputs=len(data.labels), multilabel=multilabel,
                            seed=seed, weight_decay=decay)
        span = Span(x)
        fit = fit_head(span.coords, y, span.coords[:0], y[:0], kind=LINEAR, num_outputs=len(data.labels),
                       multilabel=multilabel, seed=seed, weight_decay=decay)
        return HeadFit(head=span.raw_head(linear(fit.head)), weight_decay=decay, history=fit.history)

    def _fold_curve(self, data: ClassificationData, passes: Sequence[FeaturePass], kind: str,
                    decay: float) -> list[dict[str, Any]]:
        """The training curve of the first fold's fit, its held-out images as validation: what the
        chart of a version shows (every fold's fit looks alike)."""
        assert data.plan is not None
        task = self.task
        held = set(data.plan.repeats[0][0].tolist())
        cv = data.cv
        train = [cv[i] for i in range(len(cv)) if i not in held and (task.multilabel or data.targets[cv[i]] >= 0)]
        validation = task.known(data, [cv[i] for i in sorted(held)])
        x, vx = data.features_of(train), data.features_of(validation)
        if kind == LINEAR:
            span = Span(np.concatenate([x, vx]))
            x, vx = span.coords[:len(x)], span.coords[len(x):]
        fit = fit_head(x, data.targets[train], vx, data.targets[validation], kind=kind, num_outputs=len(data.labels),
                       multilabel=task.multilabel, seed=self.options.seed, weight_decay=decay)
        return fit.history

    # -- validate --------------------------------------------------------------------------
    def validate(self, data: ClassificationData, model: FittedClassifier) -> Validation:
        task = self.task
        assert data.plan is not None and model.cv is not None
        cv = data.cv
        oof = model.cv.probabilities
        if data.test:
            test_probs = task.probabilities(data, model, data.test)
            validation = task.measure(data, (cv, oof), (data.test, test_probs), "out-of-fold predictions")
            method = HELD_OUT
        else:
            validation = task.measure(data, (cv, oof), (cv, oof), "out-of-fold predictions")
            method = CROSS_VALIDATION
        metrics = validation.metrics
        metrics["evaluation"] = {"method": method, "folds": data.plan.k, "repeats": len(data.plan.repeats),
                                 "images": len(cv), **({"test_images": len(data.test)} if data.test else {})}
        out_of_fold = self._out_of_fold_estimate(data, model, validation)
        chosen = out_of_fold
        if data.test:
            kept = set(data.kept_out)
            judged = [i for i in task.scored(data, data.test) if i not in kept]
            rows = [data.test.index(i) for i in judged]
            held_out = estimate(task.right(data, judged, test_probs[rows], validation.thresholds), source="held-out",
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
                              multilabel=task.multilabel)
        metrics["label_issues"] = {"count": len(issues), "checked": len(task.known(data, cv)),
                                   "threshold": LABEL_ISSUE_PROBABILITY, "from": "out-of-fold predictions"}
        validation.label_issues = issues
        return validation

    def _out_of_fold_estimate(self, data: ClassificationData, model: FittedClassifier,
                              validation: Validation) -> dict[str, Any]:
        """The share of right out-of-fold answers, the mean over the repeats, with its interval."""
        assert model.cv is not None and data.plan is not None
        task = self.task
        cv = data.cv
        counted = set(task.scored(data, cv))
        scored = [i for i, position in enumerate(cv) if position in counted]
        right = []
        for oof, folds in zip(model.cv.out_of_fold, data.plan.repeats, strict=True):
            if task.multilabel:
                # Each fold judged with thresholds chosen on the other folds: tuned and judged on the same
                # predictions, per-tag thresholds would flatter the exact-match accuracy.
                cuts = cross_fitted_thresholds(oof, data.targets[cv], folds, task.tag_cuts)
                right.append(correct(oof, data.targets[cv], multilabel=True, cut=cuts)[scored])
            else:
                right.append(task.right(data, [cv[i] for i in scored], oof[scored], validation.thresholds))
        return estimate(np.stack(right), source="out-of-fold", metric=task.metric_name,
                        extra={"folds": data.plan.k, "repeats": len(data.plan.repeats),
                               "fold_spread": round(model.cv.spread, 6),
                               "standard_error": round(model.cv.standard_error, 6)})

    def refit(self, data: ClassificationData, model: FittedClassifier) -> FittedClassifier | None:
        """With test images: the head again on every labeled image (test images too) with the settings
        chosen. Without test images the model already learned from every image."""
        if not self.options.refit or not data.test or model.candidate is None:
            return None
        everything = self.task.known(data, sorted({*data.cv, *data.test}))
        fit = self._fit_final(data, everything, model.candidate.head, float(model.params["weight_decay"]))
        log.info("refit the head on all %d labeled images (evaluated on %d held-out ones)", len(everything),
                 len(data.test))
        model.head = fit.head
        model.params = {**model.params, "refit_images": len(everything)}
        return model

    # -- what the exported files are checked and calibrated on ------------------------------
    def check_images(self, data: ClassificationData) -> tuple[str, list[int]]:
        return ("out-of-fold" if not data.test else "test", (data.test or data.cv)[:CHECK_IMAGES])

    def calibration_pool(self, data: ClassificationData) -> list[int]:
        return self.task.known(data, data.cv)
