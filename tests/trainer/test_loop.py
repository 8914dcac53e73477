"""The rules the trainer's epoch loops share: the learning-rate schedule, keeping the best epoch, patience."""

from __future__ import annotations

import itertools

import torch

from services.trainer.loop import KeepBest, warmup_cosine


def test_the_learning_rate_warms_up_then_decays_to_zero() -> None:
    values = [warmup_cosine(step, 4, 20) for step in range(21)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4] == 1.0 and values[12] == 0.5 and values[20] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))


def test_keep_best_restores_the_best_epoch_and_stops_after_patience() -> None:
    layer = torch.nn.Linear(1, 1)
    keep = KeepBest(layer, patience=2)
    for epoch, loss in enumerate([0.9, 0.5, 0.6, 0.7], start=1):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        keep.update(epoch, loss)
    assert keep.should_stop and keep.restore() == 2 and layer.weight.item() == 2.0
    # Higher is better, ties keep the earlier epoch; tuples compare in order.
    best = KeepBest(layer, maximize=True)
    for epoch, value in enumerate([(0.5, 0.1), (0.7, 0.2), (0.7, 0.2), (0.7, 0.1)], start=1):
        best.update(epoch, value)
    assert best.best_epoch == 2 and not best.should_stop
