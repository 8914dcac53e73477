"""Near-duplicate grouping and the ranked list of likely label errors, on synthetic features and
probabilities (fast); `test_data_checks_shared.py` runs both on real photos."""

from __future__ import annotations

import numpy as np

from services.trainer.audit import (
    duplicate_groups,
    duplicate_report,
    label_issues,
    near_duplicates_of,
    similar_pairs,
)
from services.trainer.data import ImageRecord


def records(count: int, tags: list[str] | None = None) -> list[ImageRecord]:
    return [ImageRecord(id=f"{i:064x}", filename=f"photo-{i}.jpg", tags=[(tags or ["a"])[i % len(tags or ["a"])]],
                        regions=[], split=None) for i in range(count)]


def test_near_duplicates_chain_into_groups_and_test_twins_of_training_images_are_kept_out() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 32)).astype(np.float32)
    x[1] = x[0] + 0.01 * rng.normal(size=32)  # 0 ~ 1
    x[2] = x[1] + 0.01 * rng.normal(size=32)  # 1 ~ 2: one group of three
    x[5] = x[4] + 0.01 * rng.normal(size=32)
    pairs = similar_pairs(x)
    assert {(i, j) for i, j, _ in pairs} >= {(0, 1), (1, 2), (4, 5)}
    groups = duplicate_groups(6, pairs)
    assert groups.tolist() == [0, 0, 0, 3, 4, 4]
    assert near_duplicates_of(groups, test=[2, 3, 5], train=[0, 1, 4]) == [2, 5]
    report = duplicate_report(records(6), pairs, groups, kept_out=[2, 5])
    assert report["groups"] == 2 and report["images"] == 5
    assert [len(g["images"]) for g in report["listed"]] in ([2, 3], [3, 2])
    assert report["kept_out_of_estimate"] == [f"{2:064x}", f"{5:064x}"]


def test_label_issues_list_the_given_labels_the_models_found_unlikely_most_likely_first() -> None:
    labels = ["cat", "dog", "fox"]
    targets = np.array([0, 1, 2, 0, -1])
    probabilities = np.array([
        [0.05, 0.90, 0.05],  # labeled cat, clearly a dog
        [0.15, 0.80, 0.05],  # dog, right
        [0.30, 0.55, 0.15],  # fox at 0.15: listed, less sure
        [0.60, 0.30, 0.10],  # cat, right
        [0.01, 0.98, 0.01],  # `unknown` (face preset): never judged
    ])
    found = label_issues(records(5), labels, targets, probabilities, range(5), multilabel=False)
    assert [(item["rank"], item["filename"], item["given"], item["suggested"]) for item in found] == [
        (1, "photo-0.jpg", "cat", "dog"), (2, "photo-2.jpg", "fox", "dog")]
    assert found[0]["given_probability"] == 0.05 and found[0]["suspicion"] == 0.95


def test_multilabel_issues_are_tags_given_but_unlikely_or_missing_but_likely() -> None:
    labels = ["sky", "tree"]
    targets = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    probabilities = np.array([[0.05, 0.1], [0.5, 0.95], [0.9, 0.7]])
    found = label_issues(records(3), labels, targets, probabilities, range(3), multilabel=True)
    assert [(item["filename"], item["label"], item["given"]) for item in found] == [
        ("photo-0.jpg", "sky", True), ("photo-1.jpg", "tree", False)]
