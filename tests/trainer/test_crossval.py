"""Repeated cross-validation, the estimate's interval and the one-standard-error choice: on synthetic
features, so they run in the fast loop (no services, no backbone)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from services.trainer.crossval import (
    Span,
    correct,
    cross_fitted_thresholds,
    cross_validate,
    deal_folds,
    estimate,
    paired_difference,
    plan_folds,
    predict_out_of_fold,
    repeat_count,
    wilson_interval,
)
from services.trainer.heads import fit_linear_head, head_logits
from services.trainer.selection import (
    Candidate,
    Evaluated,
    FeaturePass,
    affordable_passes,
    linear_candidates,
    one_standard_error,
)
from visiondock.vocabulary import BACKBONES

LITE0, LITE1, LITE2 = BACKBONES


def blobs(per_class: int, classes: int, *, spread: float, seed: int = 0,
          dims: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3
    x = np.concatenate([centres[c] + rng.normal(scale=spread, size=(per_class, dims)) for c in range(classes)])
    return x.astype(np.float32), np.repeat(np.arange(classes), per_class)


def test_folds_keep_each_near_duplicate_group_whole_and_each_class_spread_evenly() -> None:
    strata = ["a"] * 12 + ["b"] * 12 + ["c"] * 6
    groups = list(range(30))
    for first, second in ((0, 1), (2, 3), (12, 13), (24, 25)):  # near-duplicate pairs
        groups[second] = first
    folds = deal_folds(strata, groups, 3, np.random.default_rng(0))
    assert sorted(np.concatenate(folds).tolist()) == list(range(30))
    for first, second in ((0, 1), (2, 3), (12, 13), (24, 25)):
        assert [first in f for f in folds] == [second in f for f in folds]
    for stratum, total in (("a", 12), ("b", 12), ("c", 6)):
        per_fold = [sum(strata[i] == stratum for i in f) for f in folds]
        assert sum(per_fold) == total and max(per_fold) - min(per_fold) <= 1


def test_a_fold_plan_repeats_different_partitions_the_same_way_for_the_same_seed() -> None:
    strata = [str(i % 4) for i in range(40)]
    plan = plan_folds(strata, seed=3)
    assert plan.k == 5 and len(plan.repeats) == repeat_count(40) == 5 and plan.images == 40
    assert [f.tolist() for f in plan.repeats[0]] == [f.tolist() for f in plan_folds(strata, seed=3).repeats[0]]
    assert [f.tolist() for f in plan.repeats[0]] != [f.tolist() for f in plan.repeats[1]]
    # k follows the smallest class: two images of one class, two folds.
    assert plan_folds(["x", "x", "y", "y", "y"], seed=0).k == 2
    assert repeat_count(720) == 2 and repeat_count(200) == 5 and repeat_count(100_000) == 2


def test_a_linear_head_fitted_in_the_span_gives_the_same_answers_as_on_the_raw_features() -> None:
    x, y = blobs(10, 3, spread=2.0, dims=40)  # 30 images, 40 dimensions: the span has at most 29
    held = np.arange(1, 30, 4)
    train = np.setdiff1d(np.arange(30), held)
    span = Span(x)
    assert span.coords.shape[1] <= 29
    raw = fit_linear_head(x[train], y[train], x[:0], y[:0], num_outputs=3, multilabel=False, weight_decay=1e-2,
                          seed=0, max_iter=2000).head
    projected = fit_linear_head(span.coords[train], y[train], x[:0, :1], y[:0], num_outputs=3, multilabel=False,
                                weight_decay=1e-2, seed=0, max_iter=2000).head
    expected = head_logits(raw, x[held])
    assert np.allclose(head_logits(projected, span.coords[held]), expected, atol=2e-2)
    # Turned back into a head on the raw features, it is the same function.
    assert np.allclose(head_logits(span.raw_head(projected), x[held]), expected, atol=2e-2)


def test_cross_validation_predicts_every_image_from_folds_that_left_it_out() -> None:
    x, y = blobs(12, 3, spread=0.5)
    plan = plan_folds([str(t) for t in y], seed=0, repeats=2)
    result = cross_validate(x, y, np.ones(len(y), bool), plan, kind="linear", num_outputs=3, multilabel=False,
                            seed=0, keep_heads=True)
    assert result.out_of_fold.shape == (2, 36, 3) and result.fold_scores.shape == (2, 5)
    assert result.score == 1.0 and result.spread == 0.0 and result.standard_error == 0.0
    assert set(result.decay_losses) == {1e-4, 1e-3, 1e-2} and result.weight_decay in result.decay_losses
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    # The kept fold heads work on raw features: the same features through them give the same answers.
    again = predict_out_of_fold(result.heads, plan, x, multilabel=False)
    assert np.allclose(again, result.out_of_fold, atol=1e-4)


def test_images_without_a_class_are_predicted_never_trained_on() -> None:
    x, y = blobs(10, 3, spread=0.5)
    targets = y.copy()
    targets[-5:] = -1  # the face preset's `unknown` people
    plan = plan_folds([str(t) for t in targets], seed=0, repeats=2)
    trainable = targets >= 0
    result = cross_validate(x, targets, trainable, plan, kind="linear", num_outputs=3, multilabel=False, seed=0)
    assert result.out_of_fold[:, -5:].sum() > 0  # predicted
    # Scored on the images with a class only: all right.
    assert result.score == 1.0
    assert not correct(result.probabilities, targets, multilabel=False)[-5:].any()


def test_noisy_data_spreads_the_fold_scores_and_the_estimate_says_how_sure_it_is() -> None:
    x, y = blobs(30, 2, spread=4.0, seed=1)
    plan = plan_folds([str(t) for t in y], seed=0)
    result = cross_validate(x, y, np.ones(len(y), bool), plan, kind="linear", num_outputs=2, multilabel=False,
                            seed=0)
    assert 0.5 < result.score < 1.0 and result.spread > 0
    assert result.standard_error == pytest.approx(result.spread / np.sqrt(plan.k))
    right = correct(result.probabilities, y, multilabel=False)
    found = estimate(right, source="out-of-fold", metric="accuracy")
    low, high = found["interval"]
    assert low < found["value"] < high and found["images"] == 60 and found["confidence"] == 0.95


def test_wilson_interval_matches_known_values() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    low, high = wilson_interval(706, 720)  # 98.06 %
    assert low == pytest.approx(0.9678, abs=1e-3) and high == pytest.approx(0.9884, abs=1e-3)


def test_a_paired_difference_counts_only_the_images_the_two_answer_differently() -> None:
    fp32 = np.array([True] * 95 + [False] * 5)
    same = paired_difference(fp32, fp32.copy())
    assert same == {"difference": 0.0, "interval": [0.0, 0.0], "images": 100, "gained": 0, "lost": 0}
    int8 = fp32.copy()
    int8[:4] = False  # four lost
    int8[-1] = True  # one gained
    found = paired_difference(fp32, int8)
    assert found["difference"] == pytest.approx(-0.03) and (found["gained"], found["lost"]) == (1, 4)
    assert found["interval"][0] < -0.03 < found["interval"][1]


def test_thresholds_judged_on_a_fold_come_from_the_other_folds() -> None:
    probabilities = np.array([[0.1], [0.2], [0.9], [0.8]])
    targets = np.array([[0.0], [0.0], [1.0], [1.0]])
    folds = [np.array([0, 2]), np.array([1, 3])]
    seen: list[list[float]] = []

    def choose(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        seen.append(sorted(p[:, 0].tolist()))
        return np.array([p[:, 0].mean()])

    cuts = cross_fitted_thresholds(probabilities, targets, folds, choose)
    assert seen == [[0.2, 0.8], [0.1, 0.9]]
    assert cuts[:, 0].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5])


class _Scored:
    def __init__(self, score: float, error: float) -> None:
        self.score, self.standard_error = score, error


def evaluated(candidate: Candidate, score: float, error: float) -> Evaluated:
    return Evaluated(candidate, _Scored(score, error))  # type: ignore[arg-type]


def test_the_cheapest_candidate_within_one_standard_error_of_the_best_wins() -> None:
    cheap, flip, big = Candidate((LITE0,)), Candidate((LITE0,), flip=True), Candidate((LITE0, LITE2))
    chosen, best = one_standard_error([evaluated(cheap, 0.983, 0.005), evaluated(flip, 0.984, 0.004),
                                       evaluated(big, 0.987, 0.005)])
    assert best.candidate == big and chosen.candidate == cheap  # 0.983 >= 0.987 - 0.005
    chosen, _ = one_standard_error([evaluated(cheap, 0.975, 0.005), evaluated(flip, 0.984, 0.004),
                                    evaluated(big, 0.987, 0.005)])
    assert chosen.candidate == flip  # the cheap one is outside one standard error, the flip within
    chosen, best = one_standard_error([evaluated(cheap, 1.0, 0.0), evaluated(big, 1.0, 0.0)])
    assert chosen.candidate == cheap and best.candidate == cheap  # a tie goes to the cheaper


def test_the_feature_budget_follows_the_number_of_images() -> None:
    names = lambda passes: [(p.backbone, p.mirrored) for p in passes]  # noqa: E731
    assert names(affordable_passes(BACKBONES, 200, 2000)) == [
        (LITE0, False), (LITE0, True), (LITE1, False), (LITE1, True), (LITE2, False), (LITE2, True)]
    assert names(affordable_passes(BACKBONES, 720, 2000)) == [(LITE0, False), (LITE0, True)]
    assert names(affordable_passes(BACKBONES, 400, 2000)) == [(LITE0, False), (LITE0, True), (LITE1, False),
                                                              (LITE1, True)]
    assert names(affordable_passes(BACKBONES, 720, 0)) == [(LITE0, False)]  # the cheapest always
    assert names(affordable_passes([LITE2], 100, 2000)) == [(LITE2, False), (LITE2, True)]
    candidates = linear_candidates([FeaturePass(LITE0), FeaturePass(LITE1), FeaturePass(LITE0, True)])
    assert [c.name for c in candidates] == ["lite0 linear", "lite0 sqrt linear", "lite1 linear", "lite1 sqrt linear",
                                            "lite0 flip linear", "lite0 flip sqrt linear", "lite0+lite1 linear",
                                            "lite0+lite1 sqrt linear"]
    assert [c.cost for c in candidates] == pytest.approx([1.0, 1.0, 1.45, 1.45, 2.0, 2.0, 2.45, 2.45])


def test_a_sqrt_candidate_reads_the_square_roots_of_the_features_at_no_extra_cost() -> None:
    plain, rooted = Candidate((LITE1,), flip=True), Candidate((LITE1,), flip=True, root=True)
    assert rooted.name == "lite1 flip sqrt linear" and rooted.cost == plain.cost
    assert rooted.passes() == plain.passes() and rooted.passes(served=True) == plain.passes(served=True)
    assert rooted.describe()["sqrt"] and not plain.describe()["sqrt"]
    features = np.array([[0.0, 0.25, 4.0], [1.0, 9.0, -1e-7]], np.float32)  # pooled ReLU6 outputs; a rounding below 0
    assert np.array_equal(plain.transform(features), features)
    assert np.array_equal(rooted.transform(features), np.array([[0.0, 0.5, 2.0], [1.0, 3.0, 0.0]], np.float32))
    # Same cost: of a plain candidate and its sqrt twin the rule keeps the one that scores higher.
    chosen, best = one_standard_error([evaluated(plain, 0.929, 0.016), evaluated(rooted, 0.932, 0.015)])
    assert chosen.candidate == rooted and best.candidate == rooted
    chosen, _ = one_standard_error([evaluated(plain, 0.935, 0.016), evaluated(rooted, 0.932, 0.015)])
    assert chosen.candidate == plain


def test_an_ensemble_serves_at_its_largest_members_size_and_resizes_the_others() -> None:
    ensemble = Candidate((LITE0, LITE2), flip=True)
    assert ensemble.input_size == 260 and ensemble.resized_members
    assert ensemble.passes() == [FeaturePass(LITE0), FeaturePass(LITE0, True), FeaturePass(LITE2),
                                 FeaturePass(LITE2, True)]
    assert ensemble.passes(served=True)[:2] == [FeaturePass(LITE0, False, 260), FeaturePass(LITE0, True, 260)]
    assert not Candidate((LITE1,)).resized_members


def test_class_counts_per_fold_hold_with_many_classes() -> None:
    strata = [f"class{i % 12}" for i in range(720)]
    plan = plan_folds(strata, seed=0)
    for folds in plan.repeats:
        for fold in folds:
            assert set(Counter(strata[i] for i in fold).values()) == {12}
