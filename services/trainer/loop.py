"""What the trainer's epoch loops share: the learning-rate schedule, keeping the best epoch's
weights, and stopping once it has not improved for a while.

The MLP head (`heads.py`), fine-tuning (`finetune.py`) and the detector can each keep their
own loop body (what a step is differs) and take these three rules from here, so a warm-up or
the early-stopping rule means the same everywhere.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """A learning-rate multiplier: linear warm-up over `warmup` steps to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))


class KeepBest:
    """The weights of the best epoch seen so far, and whether `patience` epochs have gone by without a better one.

    `update` is called once per epoch with the epoch's value: lower is better (`maximize=False`,
    a loss) or higher (`maximize=True`, a metric); values may be tuples, compared in order (ties
    of the first decided by the next). An equal value is not an improvement: the earlier epoch stays.
    """

    def __init__(self, *modules: nn.Module, patience: int | None = None, maximize: bool = False) -> None:
        self.modules = modules
        self.patience = patience
        self.maximize = maximize
        self.best_value: Any = None
        self.best_epoch: int | None = None
        self.stale = 0
        self._states: list[dict[str, Any]] = []

    def improves(self, value: Any) -> bool:
        if self.best_value is None:
            return True
        return bool(value > self.best_value if self.maximize else value < self.best_value)

    def update(self, epoch: int, value: Any) -> bool:
        """Record an epoch's value; True (and its weights copied) when it is the best so far."""
        if self.improves(value):
            self.best_value, self.best_epoch, self.stale = value, epoch, 0
            self._states = [copy.deepcopy(module.state_dict()) for module in self.modules]
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    def restore(self) -> int | None:
        """Load the best epoch's weights back into the modules; its epoch (None when nothing was recorded)."""
        for module, state in zip(self.modules, self._states, strict=False):
            module.load_state_dict(state)
        return self.best_epoch
