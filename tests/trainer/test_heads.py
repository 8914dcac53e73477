"""Classifier heads on synthetic features: what quick mode fits on cached backbone features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.trainer.heads import WEIGHT_DECAYS, activate, fit_head, head_logits

DIM = 16


def clusters(per_class: int, classes: int, seed: int, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around well-separated centres, one per class."""
    rng = np.random.default_rng(seed)
    centres = np.eye(classes, DIM) * 3.0
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels] + rng.normal(0, spread, (len(labels), DIM))
    return features.astype(np.float32), labels.astype(np.int64)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_a_head_learns_separable_classes_and_keeps_its_curves(kind: str) -> None:
    x, y = clusters(20, 3, seed=1)
    vx, vy = clusters(6, 3, seed=2)
    tx, ty = clusters(10, 3, seed=3)
    fit = fit_head(x, y, vx, vy, kind=kind, num_outputs=3, multilabel=False, seed=0)
    probabilities = activate(head_logits(fit.head, tx), multilabel=False)
    assert probabilities.shape == (30, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == ty).mean() >= 0.95
    assert fit.weight_decay in WEIGHT_DECAYS  # chosen on the validation features
    assert fit.history and fit.history[0]["epoch"] == 1 and "val_loss" in fit.history[-1]
    assert fit.history[-1]["train_loss"] < fit.history[0]["train_loss"]


def test_the_linear_head_is_deterministic_and_takes_a_given_weight_decay() -> None:
    x, y = clusters(10, 2, seed=4)
    vx, vy = clusters(4, 2, seed=5)
    first = fit_head(x, y, vx, vy, kind="linear", num_outputs=2, multilabel=False, seed=0, weight_decay=0.05)
    second = fit_head(x, y, vx, vy, kind="linear", num_outputs=2, multilabel=False, seed=0, weight_decay=0.05)
    assert first.weight_decay == 0.05
    assert torch.equal(first.head.weight, second.head.weight)
    # Without validation features there is nothing to choose the weight decay on: the default is used.
    alone = fit_head(x, y, vx[:0], vy[:0], kind="linear", num_outputs=2, multilabel=False, seed=0)
    assert alone.weight_decay == 1e-3 and "val_loss" not in alone.history[-1]


def test_a_multilabel_head_gives_independent_sigmoids() -> None:
    x, labels = clusters(20, 3, seed=6)
    targets = np.eye(3, dtype=np.float32)[labels]
    targets[labels == 2, 0] = 1.0  # class-2 images carry tag 0 as well
    vx, vlabels = clusters(5, 3, seed=7)
    vtargets = np.eye(3, dtype=np.float32)[vlabels]
    vtargets[vlabels == 2, 0] = 1.0
    fit = fit_head(x, targets, vx, vtargets, kind="linear", num_outputs=3, multilabel=True, seed=0)
    probabilities = activate(head_logits(fit.head, vx), multilabel=True)
    assert ((probabilities >= 0.5) == (vtargets > 0)).all()
    assert not np.allclose(probabilities.sum(axis=1), 1.0)
