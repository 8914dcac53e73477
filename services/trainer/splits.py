"""The train/validation/test split of a project's images: explicit assignments kept, the rest stratified.

Every image falls in one stratum (its class, or for multilabel and detection its
rarest tag) and each stratum is split on its own, seeded, so every class is trained
on and tested.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import ImageRecord


def rarest_label_groups(label_sets: Sequence[Sequence[str]]) -> list[str]:
    """Each item's rarest label ("" for none): the stratum of a multilabel or detection split."""
    counts = Counter(label for labels in label_sets for label in set(labels))
    return [min(set(labels), key=lambda name: (counts[name], name)) if labels else "" for labels in label_sets]


@dataclass
class Split:
    train: list[int] = field(default_factory=list)
    validation: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)

    def ids(self, records: Sequence[ImageRecord]) -> dict[str, list[str]]:
        return {part: [records[i].id for i in getattr(self, part)] for part in ("train", "validation", "test")}


def stratified_split(groups: Sequence[str], explicit: Sequence[str | None], *, test_fraction: float,
                     validation_fraction: float, seed: int, never_train: frozenset[str] = frozenset()) -> Split:
    """Keep the project's explicit train/test assignments; split the rest per group, seeded.

    Per group, unassigned images give `test_fraction` of themselves (at least one when
    the group has no explicit test image) to test, always leaving one to train on. The
    validation part is then taken from the training side (unassigned images first):
    `validation_fraction` of it, at least one when three or more remain. Groups in
    `never_train` (face preset: `unknown`) are shared between validation and test.
    """
    rng = np.random.default_rng(seed)
    split = Split()
    for group in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == group]
        tests = [i for i in members if explicit[i] == "test"]
        assigned_train = [i for i in members if explicit[i] == "train"]
        free = [i for i in members if explicit[i] is None]
        rng.shuffle(free)
        rng.shuffle(assigned_train)
        if group in never_train:
            rest = free + assigned_train
            n_val = len(rest) // 2
            split.validation.extend(rest[:n_val])
            split.test.extend(tests + rest[n_val:])
            continue
        n_test = round(len(free) * test_fraction)
        if not tests and len(free) + len(assigned_train) >= 2:
            n_test = max(n_test, 1)
        n_test = min(n_test, len(free) + len(assigned_train) - 1, len(free))
        n_test = max(n_test, 0)
        tests += free[:n_test]
        free = free[n_test:]
        candidates = free + assigned_train  # validation comes from unassigned images first
        n_val = round(len(candidates) * validation_fraction)
        if validation_fraction > 0 and len(candidates) >= 3:
            n_val = max(n_val, 1)
        n_val = min(n_val, max(0, len(candidates) - 1))
        split.test.extend(tests)
        split.validation.extend(candidates[:n_val])
        split.train.extend(candidates[n_val:])
    split.train.sort()
    split.validation.sort()
    split.test.sort()
    return split
