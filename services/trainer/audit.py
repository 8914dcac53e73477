"""Checks of the labeled images a classifier learns from: near-duplicates and likely label errors.

- Near-duplicates: two images whose pooled backbone features, centred on the project's mean,
  have a cosine similarity of at least `DUPLICATE_SIMILARITY` (the same photo re-encoded,
  resized, slightly cropped, brightened or mirrored; flowers12 holds 33 such pairs of its own).
  Centring matters: raw pooled features of any two photos point much the same way (hot dogs:
  distinct photos up to 0.95, a copy cropped by 10 % down to 0.88), centred ones far less
  (distinct photos up to 0.90, such a copy typically 0.89). They are grouped (a chain of
  near-duplicates is one group); cross-validation keeps each group in one fold, and a held-out
  test image with a near-duplicate on the training side is kept out of the estimate, since the
  model would be judged on a photo it has in effect seen.
- Label issues: images whose given label gets an out-of-fold probability below
  `LABEL_ISSUE_PROBABILITY` (from models that never saw the image), ranked from the lowest,
  with the label the models prefer.

Both thresholds were chosen with `bench.data_checks`, which plants copies and flips labels in the
shared photo sets and prints recall and precision for each threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .data import ImageRecord

DUPLICATE_SIMILARITY = 0.90
LABEL_ISSUE_PROBABILITY = 0.2
# Multilabel: a tag the image lacks that the models give at least 1 - LABEL_ISSUE_PROBABILITY.
MAX_LABEL_ISSUES = 500
MAX_DUPLICATE_GROUPS = 200


def similar_pairs(features: np.ndarray, threshold: float = DUPLICATE_SIMILARITY) -> list[tuple[int, int, float]]:
    """(i, j, cosine similarity of the centred features) of every pair i < j at or above `threshold`."""
    x = np.asarray(features, dtype=np.float32)
    if len(x) > 1:
        x = x - x.mean(axis=0)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pairs: list[tuple[int, int, float]] = []
    block = 1024  # rows at a time: memory stays block x N for large projects
    for start in range(0, len(unit), block):
        with threadpool_limits(1):  # threaded BLAS on a busy machine is many times slower here
            similarity = unit[start:start + block] @ unit.T
        rows, cols = np.nonzero(similarity >= threshold)
        for r, c in zip(rows, cols, strict=True):
            i = start + int(r)
            if i < int(c):
                pairs.append((i, int(c), float(similarity[r, c])))
    return pairs


def duplicate_groups(count: int, pairs: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Per image, its group: the smallest index of the images it is chained to by near-duplicate pairs."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(count)], dtype=np.int64)


def duplicate_report(records: Sequence[ImageRecord], pairs: Sequence[tuple[int, int, float]],
                     groups: np.ndarray, *, threshold: float = DUPLICATE_SIMILARITY,
                     kept_out: Sequence[int] = ()) -> dict[str, Any]:
    """What a version stores: the groups (image ids, most similar first), and the test images kept out
    of the estimate because a near-duplicate of theirs was trained on."""
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(int(group), []).append(index)
    best: dict[int, float] = {}
    for i, _, similarity in pairs:
        group = int(groups[i])
        best[group] = max(best.get(group, 0.0), similarity)
    listed = sorted((g for g, m in members.items() if len(m) > 1), key=lambda g: -best.get(g, 0.0))
    return {
        "threshold": threshold,
        "pairs": len(pairs),
        "groups": len(listed),
        "images": int(sum(len(members[g]) for g in listed)),
        "listed": [{"images": [{"id": records[i].id, "filename": records[i].filename,
                                "label": ",".join(records[i].tags)} for i in members[g]],
                    "similarity": round(best.get(g, 0.0), 4)} for g in listed[:MAX_DUPLICATE_GROUPS]],
        "kept_out_of_estimate": [records[i].id for i in kept_out],
    }


def near_duplicates_of(groups: np.ndarray, test: Sequence[int], train: Sequence[int]) -> list[int]:
    """The test images in a group with a training image."""
    trained = {int(groups[i]) for i in train}
    return [i for i in test if int(groups[i]) in trained]


def label_issues(records: Sequence[ImageRecord], labels: Sequence[str], targets: np.ndarray,
                 probabilities: np.ndarray, positions: Sequence[int], *, multilabel: bool,
                 threshold: float = LABEL_ISSUE_PROBABILITY) -> list[dict[str, Any]]:
    """Likely label errors among the images at `positions` (their rows of `probabilities` are
    out-of-fold), most likely first.

    Multiclass: the given class's probability is below `threshold`; the entry says which label
    the models prefer. Multilabel: a given tag below `threshold`, or a missing tag at or above
    1 - `threshold`. Images without a class to learn (`unknown` people) are not judged.
    """
    found: list[dict[str, Any]] = []
    for position in positions:
        record, row = records[position], probabilities[position]
        if multilabel:
            for t, label in enumerate(labels):
                given = bool(targets[position, t] > 0.5)
                p = float(row[t])
                if (given and p < threshold) or (not given and p >= 1 - threshold):
                    found.append({"image_id": record.id, "filename": record.filename, "label": label,
                                  "given": given, "probability": round(p, 6),
                                  "suspicion": round(1 - p if given else p, 6)})
            continue
        target = int(targets[position])
        if target < 0:
            continue
        p = float(row[target])
        if p < threshold:
            suggested = int(np.argmax(row))
            found.append({"image_id": record.id, "filename": record.filename, "given": labels[target],
                          "given_probability": round(p, 6), "suggested": labels[suggested],
                          "suggested_probability": round(float(row[suggested]), 6),
                          "suspicion": round(1 - p, 6)})
    found.sort(key=lambda item: (-item["suspicion"], item["image_id"]))
    for rank, item in enumerate(found, start=1):
        item["rank"] = rank
    return found[:MAX_LABEL_ISSUES]
