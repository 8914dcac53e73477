"""Which backbone(s), view and head a quick classifier is built on, chosen by repeated cross-validation.

A candidate is a feature set and a head: one backbone or a small ensemble of them (their
pooled features side by side), each image's features alone or averaged with those of its
mirror image ("flip"), taken as they are or by their square roots ("sqrt", power
normalization), and a linear or MLP head. Every candidate is cross-validated on the same
folds (`crossval.py`); the rule is the one-standard-error rule: the best mean score, then the
cheapest candidate (scoring cost per image) whose mean is within one standard error of it.
Differences smaller than that are what a different partition of the same images could give.

Which feature sets are computed follows the data, never the machine's speed: backbone passes
(Lite0 = 1 per image, Lite1 1.45, Lite2 2.0; a mirrored pass as much again) are added cheapest
first, a backbone's mirrored pass right after its plain one, while the total stays within
`feature_budget` image-passes; the cheapest is always computed. Ensembles and flip candidates cost no pass
beyond their members', the square root none at all. The MLP head is tried on the best linear
candidate's features when the images are few enough (`MLP_MAX_IMAGES`): its fits cost about 20
linear ones. Candidates race: all run the first repeat, and those clearly behind after it
(`RACE_STANDARD_ERRORS`) stop there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visiondock.vocabulary import LINEAR, MLP

from .backbone import backbone_spec
from .crossval import CrossValidated, FoldPlan, cross_validate, merge
from .heads import DEFAULT_WEIGHT_DECAY
from .options import SELECTION_BUDGET

# Image-passes in Lite0 equivalents that the candidates' features may take (`--selection-budget`).
FEATURE_BUDGET = SELECTION_BUDGET
MLP_MAX_IMAGES = 400
# After the first repeat, candidates this many standard errors (of the leader's first repeat) below it stop.
RACE_STANDARD_ERRORS = 2.0
RULE = "cheapest within one standard error of the best"


@dataclass(frozen=True)
class FeaturePass:
    """One pass of a backbone over every image: the plain view or the mirrored one, at the backbone's own
    input size or (an ensemble member) resized inside its graph from a larger `input_size`."""

    backbone: str
    mirrored: bool = False
    input_size: int | None = None

    def cost(self, images: int) -> float:
        return images * backbone_spec(self.backbone).relative_cost

    @property
    def native(self) -> FeaturePass:
        return FeaturePass(self.backbone, self.mirrored)


@dataclass(frozen=True)
class Candidate:
    backbones: tuple[str, ...]
    head: str = LINEAR
    flip: bool = False  # features averaged with those of the mirrored image
    # The head reads the square roots of the (non-negative) pooled features: power normalization damps the
    # few channels that fire strongly everywhere. Cross-validated on the same folds: flowers12 Lite0 98.26 % →
    # 98.47 %, hot dogs Lite1 flip 92.9 % → 93.2 % (and Lite1 at 320 px 93.0 % → 94.0 %).
    root: bool = False

    @property
    def name(self) -> str:
        members = "+".join(name.removeprefix("efficientnet-") for name in self.backbones)
        return f"{members}{' flip' if self.flip else ''}{' sqrt' if self.root else ''} {self.head}"

    def transform(self, features: np.ndarray) -> np.ndarray:
        """The head's input from the members' features side by side (as `compose.py` computes it)."""
        return root_features(features) if self.root else features

    @property
    def cost(self) -> float:
        """Scoring cost per image relative to Lite0 (the head's is negligible beside a backbone's)."""
        return sum(backbone_spec(b).relative_cost for b in self.backbones) * (2 if self.flip else 1)

    @property
    def input_size(self) -> int:
        """The ensemble's input: its largest member's; smaller members resize inside their graphs."""
        return max(backbone_spec(b).image_size for b in self.backbones)

    def passes(self, *, served: bool = False) -> list[FeaturePass]:
        """The passes its features are made of: as cross-validated (each member at its own size), or
        `served`, as its file computes them (members smaller than the input resized in the graph)."""
        size = self.input_size

        def member(b: str, mirrored: bool) -> FeaturePass:
            resized = served and backbone_spec(b).image_size != size
            return FeaturePass(b, mirrored, size if resized else None)

        views = (False, True) if self.flip else (False,)
        return [member(b, mirrored) for b in self.backbones for mirrored in views]

    @property
    def resized_members(self) -> bool:
        return any(backbone_spec(b).image_size != self.input_size for b in self.backbones)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backbones": list(self.backbones), "head": self.head, "flip": self.flip,
                "sqrt": self.root, "cost": round(self.cost, 3)}


def root_features(features: np.ndarray) -> np.ndarray:
    """Square roots of pooled features (means of ReLU6 outputs, never negative; clipped at 0 all the same,
    as the exported graph does, so a rounding below zero cannot give NaN)."""
    return np.sqrt(np.maximum(np.asarray(features, dtype=np.float32), 0.0))


def affordable_passes(backbones: Sequence[str], images: int, budget: float, *, flip: bool = True) -> list[FeaturePass]:
    """The backbone passes computed for choosing, cheapest first (a backbone's mirrored pass right after its
    plain one), each while the total stays within `budget`; the cheapest always. On flowers12 Lite0 with
    flip cross-validated better than Lite1 (98.4 % against 96.7 %) for less: mirrored passes are not last."""
    ordered = sorted(backbones, key=lambda b: backbone_spec(b).relative_cost)
    order = [FeaturePass(b, mirrored) for b in ordered for mirrored in ((False, True) if flip else (False,))]
    chosen: list[FeaturePass] = []
    spent = 0.0
    for candidate in order:
        cost = candidate.cost(images)
        needs_plain = candidate.mirrored and FeaturePass(candidate.backbone) not in chosen
        if needs_plain:
            continue
        if not chosen or spent + cost <= budget:
            chosen.append(candidate)
            spent += cost
    return chosen


def linear_candidates(passes: Sequence[FeaturePass], head: str = LINEAR) -> list[Candidate]:
    """Every candidate the computed passes allow: each backbone, with and without flip, and every
    ensemble of two or three of them (with flip where all members have their mirrored pass); each
    of them on the features and on their square roots."""
    plain = [p.backbone for p in passes if not p.mirrored]
    mirrored = {p.backbone for p in passes if p.mirrored}
    found: list[Candidate] = []
    for size in range(1, min(3, len(plain)) + 1):
        for members in itertools.combinations(plain, size):
            for root in (False, True):
                found.append(Candidate(members, head, root=root))
                if all(m in mirrored for m in members):
                    found.append(Candidate(members, head, flip=True, root=root))
    return sorted(found, key=lambda c: (c.cost, len(c.backbones), c.root, c.name))


@dataclass
class Evaluated:
    candidate: Candidate
    result: CrossValidated
    # Left after the first repeat: more than RACE_STANDARD_ERRORS standard errors below the leader then.
    dropped: bool = False


@dataclass
class Selection:
    evaluated: list[Evaluated]
    chosen: Evaluated
    best: Evaluated
    plan: FoldPlan
    notes: list[str] = field(default_factory=list)

    def record(self, *, metric: str, passes: Sequence[FeaturePass], budget: float | None,
               images: int) -> dict[str, Any]:
        """The selection as the version stores it (`params.selection`)."""
        threshold = self.best.result.score - self.best.result.standard_error
        rows = []
        for item in self.evaluated:
            result = item.result
            rows.append({**item.candidate.describe(), "weight_decay": result.weight_decay,
                         "score": round(result.score, 6), "spread": round(result.spread, 6),
                         "standard_error": round(result.standard_error, 6),
                         "repeat_scores": [round(float(s), 6) for s in result.repeat_scores],
                         "loss": round(result.loss, 6),
                         "within_one_se": bool(not item.dropped and result.score >= threshold - 1e-12),
                         "dropped_after_first_repeat": item.dropped, "chosen": item is self.chosen})
        record: dict[str, Any] = {
            "rule": RULE, "metric": metric, "images": images, "folds": self.plan.k, "repeats": len(self.plan.repeats),
            "chosen": self.chosen.candidate.name, "best": self.best.candidate.name,
            "standard_error": round(self.best.result.standard_error, 6), "candidates": rows,
            "feature_passes": [{"backbone": p.backbone, "mirrored": p.mirrored} for p in passes],
        }
        if budget is not None:
            record["feature_budget"] = budget
        if self.notes:
            record["notes"] = list(self.notes)
        return record


def one_standard_error(evaluated: Sequence[Evaluated]) -> tuple[Evaluated, Evaluated]:
    """(chosen, best): the best mean score, and the cheapest candidate within one standard error of it
    (ties of cost: the higher score, then the earlier candidate). Candidates dropped early take no part."""
    finalists = [e for e in evaluated if not e.dropped] or list(evaluated)
    best = max(finalists, key=lambda e: (e.result.score, -e.candidate.cost))
    floor = best.result.score - best.result.standard_error - 1e-12
    within = [e for e in finalists if e.result.score >= floor]
    chosen = min(within, key=lambda e: (round(e.candidate.cost, 6), -e.result.score, finalists.index(e)))
    return chosen, best


def select(candidates: Sequence[Candidate], features: Callable[[Candidate], np.ndarray], targets: np.ndarray,
           trainable: np.ndarray, plan: FoldPlan, *, num_outputs: int, multilabel: bool, seed: int,
           weight_decay: float | None, mlp: bool, images: int) -> Selection:
    """Cross-validate every candidate on `plan`, then the MLP on the best linear one's features when
    `mlp` (and the images are few enough); choose by the one-standard-error rule.

    A race: every candidate runs the first repeat (where its weight decay is chosen); those more than
    RACE_STANDARD_ERRORS standard errors below the leader stop there, the others run the rest."""
    decays = [weight_decay] if weight_decay is not None else None
    first, rest = FoldPlan(plan.k, plan.repeats[:1]), FoldPlan(plan.k, plan.repeats[1:])
    matrices: dict[Candidate, np.ndarray] = {}

    def run(candidate: Candidate, part: FoldPlan, tried: Sequence[float] | None) -> CrossValidated:
        if candidate not in matrices:
            matrices[candidate] = features(candidate)
        return cross_validate(matrices[candidate], targets, trainable, part, kind=candidate.head,
                              num_outputs=num_outputs, multilabel=multilabel, seed=seed, weight_decays=tried,
                              keep_heads=True)

    def race(pool: Sequence[Candidate]) -> list[Evaluated]:
        # The MLP's decay barely moves its score (hot dogs: the same accuracy at all three): one.
        entered = [Evaluated(c, run(c, first, decays or ([DEFAULT_WEIGHT_DECAY] if c.head == MLP else None)))
                   for c in pool]
        leader = max(entered, key=lambda e: e.result.score)
        floor = leader.result.score - RACE_STANDARD_ERRORS * leader.result.standard_error - 1e-12
        for item in entered:
            if item.result.score < floor:
                item.dropped = True
            elif rest.repeats:
                item.result = merge(item.result, run(item.candidate, rest, [item.result.weight_decay]))
            matrices.pop(item.candidate, None)
        return entered

    evaluated = race(candidates)
    notes: list[str] = []
    linear = [e for e in evaluated if e.candidate.head == LINEAR and not e.dropped]
    if mlp and linear:
        if images <= MLP_MAX_IMAGES:
            leader = max(linear, key=lambda e: (e.result.score, -e.candidate.cost))
            source = leader.candidate
            evaluated += race([Candidate(source.backbones, MLP, source.flip, source.root)])
        else:
            notes.append(f"the MLP head was not tried: {images} images, more than {MLP_MAX_IMAGES} (each MLP fit "
                         "costs about 20 linear ones)")
    if any(e.dropped for e in evaluated):
        notes.append(f"{sum(e.dropped for e in evaluated)} candidates stopped after the first repeat, more than "
                     f"{RACE_STANDARD_ERRORS:g} standard errors below the leader")
    chosen, best = one_standard_error(evaluated)
    return Selection(evaluated=evaluated, chosen=chosen, best=best, plan=plan, notes=notes)
