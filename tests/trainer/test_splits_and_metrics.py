"""Targets, splits and held-out metrics: the parts of a run that decide what its numbers mean."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.data import ImageRecord, TrainingDataError, class_targets, multilabel_targets
from services.trainer.evaluation import (
    choose_confidence_threshold,
    multiclass_metrics,
    multilabel_metrics,
    multilabel_thresholds,
    thin_curve,
)
from services.trainer.splits import rarest_label_groups, stratified_split


def records(tags: list[list[str]], splits: list[str | None] | None = None) -> list[ImageRecord]:
    splits = splits or [None] * len(tags)
    return [ImageRecord(id=f"{i:064x}", filename=f"{i}.jpg", tags=t, regions=[], split=s)
            for i, (t, s) in enumerate(zip(tags, splits, strict=True))]


def test_split_keeps_explicit_assignments_and_gives_every_class_train_and_test() -> None:
    groups = ["cat"] * 10 + ["dog"] * 10 + ["owl"] * 2
    explicit: list[str | None] = [None] * 22
    explicit[0], explicit[1], explicit[10] = "test", "train", "train"
    split = stratified_split(groups, explicit, test_fraction=0.2, validation_fraction=0.25, seed=3)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert sum(len(p) for p in parts) == 22 and len(set().union(*parts)) == 22  # disjoint, complete
    assert 0 in split.test and 10 not in split.test and 1 not in split.test
    for name in ("cat", "dog", "owl"):
        members = {i for i, g in enumerate(groups) if g == name}
        assert members & set(split.train) and members & set(split.test)
    # Cats: the explicit test image, and 20 % of the 8 unassigned ones.
    assert len({i for i in split.test if groups[i] == "cat"}) == 3
    assert len({i for i in split.validation if groups[i] == "dog"}) == 2
    # The owl's two images: one to train, one to test, none to spare for validation.
    assert not {i for i in split.validation if groups[i] == "owl"}
    again = stratified_split(groups, explicit, test_fraction=0.2, validation_fraction=0.25, seed=3)
    other = stratified_split(groups, explicit, test_fraction=0.2, validation_fraction=0.25, seed=4)
    assert again == split and other != split


def test_people_to_reject_are_never_trained_on() -> None:
    groups = ["ann"] * 6 + ["unknown"] * 4
    split = stratified_split(groups, [None] * 10, test_fraction=0.2, validation_fraction=0.2, seed=0,
                             never_train=frozenset({"unknown"}))
    unknown = set(range(6, 10))
    assert not unknown & set(split.train)
    assert len(unknown & set(split.validation)) == 2 and len(unknown & set(split.test)) == 2


def test_bad_labels_are_refused_with_what_to_fix() -> None:
    with pytest.raises(TrainingDataError, match="'dog' has 1"):
        class_targets(records([["cat"], ["cat"], ["dog"]]))
    with pytest.raises(TrainingDataError, match="at least two classes"):
        class_targets(records([["cat"], ["cat"]]))
    with pytest.raises(TrainingDataError, match="'sea' has 1"):
        multilabel_targets(records([["sun"], ["sun", "sea"], []]))
    labels, targets = class_targets(records([["a"], ["b"], ["unknown"], ["a"], ["b"]]), unknown_tag="unknown")
    assert labels == ["a", "b"] and targets.tolist() == [0, 1, -1, 0, 1]
    labels, matrix = multilabel_targets(records([["sun"], ["sun", "sea"], [], ["sea"]]))
    assert labels == ["sea", "sun"] and matrix.tolist() == [[0, 1], [1, 1], [0, 0], [1, 0]]
    assert rarest_label_groups([["sun", "sea"], ["sun"], [], ["sun"]]) == ["sea", "sun", "", "sun"]


def test_confidence_threshold_keeps_the_most_answers_at_the_target_precision() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    correct = np.array([True, True, True, True, False, True, False, False])
    # Kept at >= 0.8: 4 of 4 right; adding 0.7 drops precision to 0.8; so 0.8 at target 0.9.
    assert choose_confidence_threshold(correct, confidence, target_precision=0.9) == pytest.approx(0.8)
    assert choose_confidence_threshold(correct, confidence, target_precision=0.8) == pytest.approx(0.6)
    assert choose_confidence_threshold(np.zeros(3, bool), np.array([0.9, 0.5, 0.2]),
                                       target_precision=0.95) == pytest.approx(0.9)
    assert choose_confidence_threshold(np.zeros(0, bool), np.zeros(0), target_precision=0.95) is None
    # Equal confidences are kept or refused together.
    assert choose_confidence_threshold(np.array([True, False]), np.array([0.7, 0.7]),
                                       target_precision=0.9) == pytest.approx(0.7)


def test_metrics_carry_per_class_ap_curves_and_the_confusion_matrix() -> None:
    targets = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1],
                              [0.1, 0.1, 0.8], [0.3, 0.1, 0.6]])
    metrics = multiclass_metrics(targets, probabilities, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["c"]["ap"] == pytest.approx(1.0)
    assert set(metrics["pr_curves"]["a"]) == {"precision", "recall", "threshold"}

    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.4], [0.2, 0.1]])
    thresholds = multilabel_thresholds(truth, probs, ["x", "y"])
    assert thresholds == {"x": pytest.approx(0.6), "y": pytest.approx(0.4)}
    ml = multilabel_metrics(truth, probs, ["x", "y"], thresholds)
    assert ml["accuracy"] == 1.0 and ml["per_class"]["y"]["threshold"] == pytest.approx(0.4)
    curve = thin_curve(np.linspace(1, 0, 501), np.linspace(0, 1, 501), np.linspace(0, 1, 500), points=20)
    assert len(curve["threshold"]) == 20 and curve["threshold"][0] == 0.0 and curve["threshold"][-1] == 1.0
