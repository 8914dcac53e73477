"""Classifier heads on pooled backbone features, and the classifier graph that is exported.

Quick mode fits a head on cached pooled features: a linear layer by full-batch
L-BFGS (multinomial or per-tag logistic regression, deterministic, about a second
for a thousand images), or a small MLP. Advanced mode starts from that head
(`finetune.py`). Not options, tuned here: the weight decays tried, the MLP's size,
epochs and patience.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from visiondock.vocabulary import LINEAR

from .backbone import PooledFeatures
from .loop import KeepBest

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)
DEFAULT_WEIGHT_DECAY = 1e-3
MAX_HISTORY = 60


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, *, multilabel: bool,
            label_smoothing: float = 0.0) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def score(logits: torch.Tensor, targets: torch.Tensor, *, multilabel: bool) -> float:
    """Accuracy (multiclass) or micro F1 at 0.5 (multilabel): the curve people read per epoch."""
    if multilabel:
        predicted = logits > 0
        truth = targets > 0.5
        tp = (predicted & truth).sum().item()
        return 2 * tp / max(1, predicted.sum().item() + truth.sum().item())
    return (logits.argmax(1) == targets).float().mean().item()


def validation_point(logits: torch.Tensor, targets: torch.Tensor, *, multilabel: bool) -> dict[str, float]:
    """The validation loss and metric of one point of a training curve."""
    return {"val_loss": round(loss_fn(logits, targets, multilabel=multilabel).item(), 6),
            "val_metric": round(score(logits, targets, multilabel=multilabel), 6)}


def _tensors(features: np.ndarray, targets: np.ndarray, multilabel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(targets.astype(np.float32 if multilabel else np.int64))
    return x, y


def _thin(history: list[dict[str, float]]) -> list[dict[str, float]]:
    if len(history) <= MAX_HISTORY:
        return history
    keep = np.unique(np.linspace(0, len(history) - 1, MAX_HISTORY).round().astype(int))
    return [history[i] for i in keep]


@dataclass
class HeadFit:
    head: nn.Module
    weight_decay: float
    # MLP: the epoch kept (what a refit on every image trains for); None for the linear head.
    epochs: int | None = None
    # One entry per full pass over the training features (an L-BFGS iteration or an epoch).
    history: list[dict[str, float]] = field(default_factory=list)


def fit_linear_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
                    num_outputs: int, multilabel: bool, weight_decay: float, seed: int,
                    max_iter: int = 300, start: nn.Module | None = None,
                    tolerance_change: float = 1e-9) -> HeadFit:
    """Logistic regression on features by full-batch L-BFGS, with the loss curves it went through.

    The problem is convex, so `start` (a linear head fitted with a nearby weight decay or on
    nearly the same images) changes only how many steps reach the optimum, not the optimum."""
    torch.manual_seed(seed)
    x, y = _tensors(train_x, train_y, multilabel)
    vx, vy = _tensors(val_x, val_y, multilabel)
    head = nn.Linear(x.shape[1], num_outputs)
    if isinstance(start, nn.Linear) and start.weight.shape == head.weight.shape:
        head.load_state_dict(start.state_dict())
    else:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_change=tolerance_change,
                                  line_search_fn="strong_wolfe")
    history: list[dict[str, float]] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = head(x)
        data_loss = loss_fn(logits, y, multilabel=multilabel)
        loss = data_loss + weight_decay * head.weight.pow(2).sum() / 2
        loss.backward()
        entry = {"epoch": len(history) + 1, "train_loss": round(data_loss.item(), 6),
                 "train_metric": round(score(logits.detach(), y, multilabel=multilabel), 6)}
        if len(vx):
            with torch.no_grad():
                entry |= validation_point(head(vx), vy, multilabel=multilabel)
        history.append(entry)
        return loss

    optimizer.step(closure)
    return HeadFit(head=head.eval(), weight_decay=weight_decay, history=_thin(history))


def fit_mlp_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
                 num_outputs: int, multilabel: bool, weight_decay: float, seed: int, epochs: int = 60,
                 hidden: int = 256, patience: int = 10) -> HeadFit:
    """A one-hidden-layer MLP trained with AdamW; the epoch with the best validation loss is kept."""
    torch.manual_seed(seed)
    x, y = _tensors(train_x, train_y, multilabel)
    vx, vy = _tensors(val_x, val_y, multilabel)
    head = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, num_outputs))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=weight_decay * 100)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    # Without validation images (a refit on every image) the last epoch is kept: its value is -epoch.
    keep = KeepBest(head, patience=patience)
    for epoch in range(1, epochs + 1):
        head.train()
        losses, metrics = [], []
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            logits = head(x[batch])
            loss = loss_fn(logits, y[batch], multilabel=multilabel)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(batch))
            metrics.append(score(logits.detach(), y[batch], multilabel=multilabel) * len(batch))
        entry = {"epoch": epoch, "train_loss": round(sum(losses) / len(x), 6),
                 "train_metric": round(sum(metrics) / len(x), 6)}
        head.eval()
        if len(vx):
            with torch.no_grad():
                entry |= validation_point(head(vx), vy, multilabel=multilabel)
        history.append(entry)
        keep.update(epoch, entry.get("val_loss", -epoch))
        if keep.should_stop:
            break
    best_epoch = keep.restore()
    return HeadFit(head=head.eval(), weight_decay=weight_decay, history=history, epochs=best_epoch)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch with `count` intra-op threads inside the block.

    A head's matrices are small: one thread does them in a fraction of a second, while
    two threads synchronizing on a busy CPU made the same L-BFGS fit many times slower
    (docs/benchmarks.md).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *, kind: str,
             num_outputs: int, multilabel: bool, seed: int, weight_decay: float | None = None,
             weight_decays: Sequence[float] | None = None, epochs: int | None = None,
             start: nn.Module | None = None, tolerance_change: float = 1e-9) -> HeadFit:
    """Fit a head; without a given weight decay, the one of `weight_decays` with the lowest
    validation loss is chosen. `epochs` fixes the MLP's epochs (a refit without validation);
    `start` is a fitted linear head to start from (a refit); `tolerance_change` is where L-BFGS
    stops (a linear head's loss changing less than that between steps)."""
    with torch_threads(1):
        return _fit_head(train_x, train_y, val_x, val_y, kind=kind, num_outputs=num_outputs, multilabel=multilabel,
                         seed=seed, weight_decay=weight_decay, weight_decays=weight_decays or WEIGHT_DECAYS,
                         epochs=epochs, start=start, tolerance_change=tolerance_change)


def _fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *, kind: str,
              num_outputs: int, multilabel: bool, seed: int, weight_decay: float | None,
              weight_decays: Sequence[float], epochs: int | None, start: nn.Module | None,
              tolerance_change: float) -> HeadFit:
    def fit(decay: float, start: nn.Module | None) -> HeadFit:
        if kind == LINEAR:
            return fit_linear_head(train_x, train_y, val_x, val_y, num_outputs=num_outputs, multilabel=multilabel,
                                   weight_decay=decay, seed=seed, start=start, tolerance_change=tolerance_change)
        return fit_mlp_head(train_x, train_y, val_x, val_y, num_outputs=num_outputs, multilabel=multilabel,
                            weight_decay=decay, seed=seed, **({"epochs": epochs} if epochs else {}))

    if weight_decay is not None or len(val_x) < 5:
        return fit(weight_decay or DEFAULT_WEIGHT_DECAY, start)
    # Strongest penalty first, each fit starting from the previous one: a third fewer L-BFGS steps.
    fits: list[HeadFit] = []
    for decay in sorted(weight_decays, reverse=True):
        fits.append(fit(decay, fits[-1].head if fits else start))
    vx, vy = _tensors(val_x, val_y, multilabel)

    def val_loss(candidate: HeadFit) -> float:
        with torch.no_grad():
            return loss_fn(candidate.head(vx), vy, multilabel=multilabel).item()

    return min(fits, key=val_loss)


def head_validation(head: nn.Module, features: np.ndarray, targets: np.ndarray, *,
                    multilabel: bool) -> dict[str, float]:
    """A fitted head's validation loss and metric on features."""
    x, y = _tensors(features, targets, multilabel)
    with torch_threads(1), torch.inference_mode():
        return validation_point(head(x), y, multilabel=multilabel)


def head_logits(head: nn.Module, features: np.ndarray) -> np.ndarray:
    with torch_threads(1), torch.inference_mode():
        logits: np.ndarray = head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()
        return logits


def activate(logits: np.ndarray, *, multilabel: bool) -> np.ndarray:
    """Logits → probabilities as the exported model outputs them (softmax or sigmoids)."""
    tensor = torch.from_numpy(logits)
    return (torch.sigmoid(tensor) if multilabel else torch.softmax(tensor, dim=1)).numpy()


# -- the exported graph -----------------------------------------------------------------------
class HeadOutputs(nn.Module):
    """Head and softmax (or sigmoids): pooled features → what the exported model answers."""

    def __init__(self, head: nn.Module, *, multilabel: bool) -> None:
        super().__init__()
        self.head = head
        self.multilabel = multilabel

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.head(features)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


class ImageClassifier(HeadOutputs):
    """Backbone, pooling, head and softmax (or sigmoids): the graph that is exported to ONNX."""

    def __init__(self, features: PooledFeatures, head: nn.Module, *, multilabel: bool) -> None:
        super().__init__(head, multilabel=multilabel)
        self.features = features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return super().forward(self.features(image))
