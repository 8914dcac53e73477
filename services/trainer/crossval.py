"""Repeated stratified k-fold cross-validation of heads on cached features, and what it estimates.

- `plan_folds`: per repeat, k folds dealt per stratum (class, or rarest tag), with groups of
  near-duplicate images (`audit.duplicate_groups`) kept whole in one fold, so no image is
  predicted by a model that learned its twin.
- `Span`: features centred and written in an orthonormal basis of the images' span. An
  L2-penalized linear head fitted there gives every image (held-out ones included, since the
  basis is computed from all of them) the same logits as on the raw features, with at most as
  many dimensions as images, and L-BFGS needs about half the steps (flowers12: 57 instead of
  102). `Span.raw_head` turns such a head back into one on the raw features.
- `cross_validate`: a head kind's out-of-fold probabilities for every repeat, the weight decay
  chosen on the first repeat by out-of-fold loss, the per-fold scores and the fitted fold heads.
- `estimate`: the expected score on new images with a 95 % Wilson interval, and
  `paired_difference`: the difference of two models' scores on the same images with its interval.

Folds use every image with a target; images without one to learn (the face preset's
`unknown` people) are predicted in their fold and never trained on.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from visiondock.vocabulary import LINEAR

from .heads import WEIGHT_DECAYS, activate, fit_head, head_logits, loss_fn, torch_threads

MAX_FOLDS = 5
# More repeats for fewer images: the partition's luck matters most there and the fits are cheap.
# round(REPEAT_IMAGES / images), between MIN_REPEATS and MAX_REPEATS: 720 images → 2, 200 → 5.
REPEAT_IMAGES = 1500
MIN_REPEATS, MAX_REPEATS = 2, 5
Z_95 = 1.959964
# Where L-BFGS stops in cross-validation: the loss changing less than this between steps. About half the
# steps of the default 1e-9 at the same out-of-fold accuracy (hot dogs, Lite1: 91.7 % either way).
CV_TOLERANCE = 1e-6


def fold_count(strata: Sequence[str]) -> int:
    """k: the smallest stratum's size, at most MAX_FOLDS (every fold then holds each class)."""
    return min(MAX_FOLDS, min(Counter(strata).values()))


def repeat_count(images: int) -> int:
    return int(np.clip(round(REPEAT_IMAGES / max(images, 1)), MIN_REPEATS, MAX_REPEATS))


@dataclass
class FoldPlan:
    k: int
    # repeats[r][f]: the positions (into the cross-validated images) held out in fold f of repeat r.
    repeats: list[list[np.ndarray]]

    @property
    def images(self) -> int:
        return int(sum(len(fold) for fold in self.repeats[0]))


def deal_folds(strata: Sequence[str], groups: Sequence[int], k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One partition into k folds: per stratum, its groups (largest first, ties in random order) each go
    to the fold holding the fewest images of that stratum so far, then the fewest overall. A group
    whose images carry different strata goes with the stratum most of them carry. A group larger than
    a fold's share of its stratum is not a few copies of one photo but a class of look-alikes (plain
    product shots, drawings): it is dealt image by image, or whole folds would lack the class."""
    members: dict[int, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        members[group].append(position)
    sizes = Counter(strata)
    for group in [g for g, positions in members.items() if len(positions) > 1]:
        positions = members[group]
        stratum = Counter(strata[p] for p in positions).most_common(1)[0][0]
        if len(positions) > max(1, sizes[stratum] // k):
            del members[group]
            for position in positions:
                members[-1 - position] = [position]  # its own group (negative ids never clash with indices)
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for group, positions in members.items():
        stratum = Counter(strata[p] for p in positions).most_common(1)[0][0]
        by_stratum[stratum].append(group)
    folds: list[list[int]] = [[] for _ in range(k)]
    for stratum in sorted(by_stratum):
        order = rng.permutation(len(by_stratum[stratum]))
        chosen = sorted((by_stratum[stratum][i] for i in order), key=lambda g: -len(members[g]))
        in_stratum = [0] * k
        for group in chosen:
            target = min(range(k), key=lambda f: (in_stratum[f], len(folds[f]), f))
            folds[target] += members[group]
            in_stratum[target] += len(members[group])
    return [np.array(sorted(fold), dtype=np.int64) for fold in folds]


def plan_folds(strata: Sequence[str], groups: Sequence[int] | None = None, *, seed: int,
               repeats: int | None = None, k: int | None = None) -> FoldPlan:
    """`repeats` partitions into k folds (defaults: `repeat_count`, `fold_count`), seeded."""
    k = k or fold_count(strata)
    groups = list(range(len(strata))) if groups is None else list(groups)
    count = repeats or repeat_count(len(strata))
    return FoldPlan(k=k, repeats=[deal_folds(strata, groups, k, np.random.default_rng([seed, r]))
                                  for r in range(count)])


class Span:
    """Features centred and in an orthonormal basis of the images' span (see the module docstring)."""

    def __init__(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64)
        self.mean = x.mean(axis=0)
        centred = x - self.mean
        # The eigenvectors of the smaller Gram matrix (images x images, or features x features) on one BLAS
        # thread: a threaded SVD of the same features was many times slower on a busy machine
        # (docs/benchmarks.md).
        with threadpool_limits(1):
            if len(x) <= x.shape[1]:
                values, vectors = np.linalg.eigh(centred @ centred.T)
                keep = values > max(values.max(initial=0.0), 0.0) * 1e-10
                basis = centred.T @ vectors[:, keep] / np.sqrt(values[keep])
            else:
                values, vectors = np.linalg.eigh(centred.T @ centred)
                keep = values > max(values.max(initial=0.0), 0.0) * 1e-10
                basis = vectors[:, keep]
            if not basis.shape[1]:  # every image the same
                basis = np.eye(x.shape[1])[:, :1]
            self.basis = basis  # d x r, orthonormal columns
            self.coords = (centred @ self.basis).astype(np.float32)

    def project(self, features: np.ndarray) -> np.ndarray:
        with threadpool_limits(1):
            raw = np.asarray(features, dtype=np.float64)
            projected: np.ndarray = ((raw - self.mean) @ self.basis).astype(np.float32)
            return projected

    def raw_head(self, head: nn.Linear) -> nn.Linear:
        """The same linear head on the raw features: W_raw = W B^T, b_raw = b - W_raw mean."""
        with threadpool_limits(1):
            weight = head.weight.detach().double().numpy() @ self.basis.T
            bias = head.bias.detach().double().numpy() - weight @ self.mean
        raw = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            raw.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            raw.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        return raw.eval()


def linear(head: nn.Module) -> nn.Linear:
    """`head`, which a linear fit made: only a linear head carries over from the span to the raw features."""
    if not isinstance(head, nn.Linear):
        raise TypeError(f"a linear head was expected, got {type(head).__name__}")
    return head


def correct(probabilities: np.ndarray, targets: np.ndarray, *, multilabel: bool,
            cut: np.ndarray | float = 0.5) -> np.ndarray:
    """Per image, whether the answer is right: the top class (multiclass; an `unknown` target, -1, is
    never right) or every tag on the right side of its threshold (multilabel)."""
    right: np.ndarray
    if multilabel:
        right = ((probabilities >= cut) == (targets > 0.5)).all(axis=1)
    else:
        right = (targets >= 0) & (probabilities.argmax(axis=1) == targets)
    return right


def mean_loss(probabilities: np.ndarray, targets: np.ndarray, *, multilabel: bool) -> float:
    """Cross-entropy (softmax) or binary cross-entropy (sigmoids) of probabilities against targets."""
    p = torch.from_numpy(np.asarray(probabilities, dtype=np.float32))
    if multilabel:
        return loss_fn(torch.logit(p.clamp(1e-6, 1 - 1e-6)), torch.from_numpy(targets.astype(np.float32)),
                       multilabel=True).item()
    return loss_fn(torch.log(p.clamp_min(1e-9)), torch.from_numpy(targets.astype(np.int64)), multilabel=False).item()


@dataclass
class CrossValidated:
    """One head kind on one feature matrix, cross-validated."""

    weight_decay: float
    # [repeats, images, outputs]: each image's probabilities from the fold model that left it out.
    out_of_fold: np.ndarray
    # [repeats, k]: the score (share of right answers) of each fold's held-out images.
    fold_scores: np.ndarray
    repeat_scores: np.ndarray  # [repeats]: the share of right answers over all images, per repeat
    loss: float  # out-of-fold loss of the first repeat at the chosen decay
    # [repeats][k] fitted heads, on the raw features.
    heads: list[list[nn.Module]] = field(default_factory=list)
    decay_losses: dict[float, float] = field(default_factory=dict)

    @property
    def probabilities(self) -> np.ndarray:
        """Each image's out-of-fold probabilities averaged over the repeats."""
        averaged: np.ndarray = self.out_of_fold.mean(axis=0)
        return averaged

    @property
    def score(self) -> float:
        """The share of right answers over every repeat's folds (each image counted once per repeat)."""
        return float(self.repeat_scores.mean())

    @property
    def spread(self) -> float:
        """The standard deviation of the fold scores (all repeats)."""
        return float(self.fold_scores.std(ddof=1)) if self.fold_scores.size > 1 else 0.0

    @property
    def standard_error(self) -> float:
        """Of the mean score: the fold spread over the square root of k (repeats share their images, so
        they narrow the partition's luck, not the data's)."""
        return self.spread / math.sqrt(self.fold_scores.shape[1])


def cross_validate(features: np.ndarray, targets: np.ndarray, trainable: np.ndarray, plan: FoldPlan, *,
                   kind: str, num_outputs: int, multilabel: bool, seed: int,
                   weight_decays: Sequence[float] | None = None, keep_heads: bool = False) -> CrossValidated:
    """Out-of-fold probabilities of a `kind` head for every repeat of `plan`.

    Without a single weight decay given, each of `weight_decays` (default: the trainer's) is
    tried on the first repeat, strongest first, each fold's fit starting from the previous decay's
    (linear: a convex problem, so only the number of steps changes); the lowest out-of-fold loss
    wins and the other repeats use it.
    """
    decays = sorted(weight_decays or WEIGHT_DECAYS, reverse=True)
    span = Span(features) if kind == LINEAR else None
    x = span.coords if span is not None else np.asarray(features, dtype=np.float32)
    n = len(targets)
    labeled = np.ones(n, bool) if multilabel else targets >= 0

    def fit(train: np.ndarray, decay: float, start: nn.Module | None) -> nn.Module:
        return fit_head(x[train], targets[train], x[:0], targets[:0], kind=kind, num_outputs=num_outputs,
                        multilabel=multilabel, seed=seed, weight_decay=decay, start=start,
                        tolerance_change=CV_TOLERANCE).head

    def held_out_probabilities(head: nn.Module, fold: np.ndarray) -> np.ndarray:
        return activate(head_logits(head, x[fold]), multilabel=multilabel)

    def training(fold: np.ndarray) -> np.ndarray:
        mask = trainable.copy()
        mask[fold] = False
        return np.flatnonzero(mask)

    with torch_threads(1):
        first = plan.repeats[0]
        by_decay: dict[float, tuple[np.ndarray, list[nn.Module]]] = {}
        previous: list[nn.Module | None] = [None] * plan.k
        for decay in decays:
            oof = np.zeros((n, num_outputs), np.float32)
            heads = []
            for f, fold in enumerate(first):
                head = fit(training(fold), decay, previous[f] if kind == LINEAR else None)
                oof[fold] = held_out_probabilities(head, fold)
                heads.append(head)
            previous = list(heads)
            by_decay[decay] = (oof, heads)
        losses = {decay: mean_loss(oof[labeled], targets[labeled], multilabel=multilabel)
                  for decay, (oof, _) in by_decay.items()}
        chosen = min(decays, key=lambda d: (losses[d], -d))  # ties: the stronger penalty
        repeats_oof = [by_decay[chosen][0]]
        repeats_heads = [by_decay[chosen][1]]
        for folds in plan.repeats[1:]:
            oof = np.zeros((n, num_outputs), np.float32)
            heads = []
            for f, fold in enumerate(folds):
                head = fit(training(fold), chosen, repeats_heads[0][f] if kind == LINEAR else None)
                oof[fold] = held_out_probabilities(head, fold)
                heads.append(head)
            repeats_oof.append(oof)
            repeats_heads.append(heads)
    out_of_fold = np.stack(repeats_oof)
    right = np.stack([correct(oof, targets, multilabel=multilabel) for oof in out_of_fold])
    scored = labeled
    fold_scores = np.array([[right[r][fold][scored[fold]].mean() if scored[fold].any() else np.nan
                             for fold in folds] for r, folds in enumerate(plan.repeats)])
    repeat_scores = np.array([right[r][scored].mean() for r in range(len(plan.repeats))])
    if keep_heads:
        raw = [[span.raw_head(linear(h)) if span is not None else h for h in heads] for heads in repeats_heads]
    else:
        raw = []
    return CrossValidated(weight_decay=chosen, out_of_fold=out_of_fold, fold_scores=np.nan_to_num(fold_scores),
                          repeat_scores=repeat_scores, loss=losses[chosen], heads=raw, decay_losses=losses)


def merge(first: CrossValidated, rest: CrossValidated) -> CrossValidated:
    """One cross-validation's first repeats and its further ones (run at the decay the first chose)."""
    return CrossValidated(weight_decay=first.weight_decay,
                          out_of_fold=np.concatenate([first.out_of_fold, rest.out_of_fold]),
                          fold_scores=np.concatenate([first.fold_scores, rest.fold_scores]),
                          repeat_scores=np.concatenate([first.repeat_scores, rest.repeat_scores]),
                          loss=first.loss, heads=[*first.heads, *rest.heads], decay_losses=first.decay_losses)


def predict_out_of_fold(heads: Sequence[Sequence[nn.Module]], plan: FoldPlan, features: np.ndarray, *,
                        multilabel: bool) -> np.ndarray:
    """[repeats, images, outputs]: other features of the same images (e.g. an INT8 backbone's) through the
    fold heads `cross_validate(..., keep_heads=True)` fitted, each image by the heads that left it out."""
    outputs = heads[0][0].out_features if isinstance(heads[0][0], nn.Linear) else None
    result: list[np.ndarray] = []
    with torch_threads(1):
        for repeat, folds in zip(heads, plan.repeats, strict=True):
            probabilities: np.ndarray | None = None
            for head, fold in zip(repeat, folds, strict=True):
                answer = activate(head_logits(head, features[fold]), multilabel=multilabel)
                if probabilities is None:
                    probabilities = np.zeros((len(features), outputs or answer.shape[1]), np.float32)
                probabilities[fold] = answer
            assert probabilities is not None
            result.append(probabilities)
    return np.stack(result)


# -- estimates --------------------------------------------------------------------------------
def wilson_interval(successes: float, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (it stays inside [0, 1] and is sensible near 0 and 1)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(right: np.ndarray, *, source: str, metric: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The expected share of right answers on new images like these, with its 95 % interval.

    `right` is per image, or [repeats, images] for repeated cross-validation: the value is then the
    mean over the repeats (each a single model's answer per image, never an average of them), and
    the interval is for that many images, since the repeats see the same ones."""
    right = np.atleast_2d(np.asarray(right, dtype=bool))
    images = int(right.shape[1])
    value = float(right.mean()) if right.size else 0.0
    low, high = wilson_interval(value * images, images)
    return {"metric": metric, "value": round(value, 6), "interval": [round(low, 6), round(high, 6)],
            "confidence": 0.95, "images": images, "source": source, **(extra or {})}


def paired_difference(first: np.ndarray, second: np.ndarray, z: float = Z_95) -> dict[str, Any]:
    """`second` minus `first` share of right answers on the same images, with a 95 % interval
    (normal approximation of the paired difference; it needs only the discordant images)."""
    first, second = np.asarray(first, bool), np.asarray(second, bool)
    n = len(first)
    gained = int((second & ~first).sum())
    lost = int((first & ~second).sum())
    difference = (gained - lost) / n if n else 0.0
    variance = (gained + lost - (gained - lost) ** 2 / n) / (n * n) if n else 0.0
    half = z * math.sqrt(max(variance, 0.0))
    return {"difference": round(difference, 6), "interval": [round(difference - half, 6), round(difference + half, 6)],
            "images": n, "gained": gained, "lost": lost}


def cross_fitted_thresholds(probabilities: np.ndarray, targets: np.ndarray, folds: Sequence[np.ndarray],
                            choose: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Per image, thresholds chosen on the other folds' out-of-fold answers (`choose(targets, probabilities)`
    → one threshold per output): what judging a threshold on the images it was tuned on would flatter."""
    cuts = np.zeros(probabilities.shape, np.float64)
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(targets)), fold)
        cuts[fold] = choose(targets[rest], probabilities[rest])
    return cuts
