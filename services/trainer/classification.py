"""Classifier heads on backbone features, and fine-tuning of the upper backbone blocks.

Quick mode fits a head on cached pooled features: a linear layer by full-batch
L-BFGS (multinomial or per-tag logistic regression, deterministic, about a second
for a thousand images), or a small MLP. Advanced mode starts from that head and
fine-tunes the backbone's upper blocks on augmented images; the frozen trunk below
them runs in ONNX Runtime (or on the GPU), so the CPU spends its time on the blocks
that learn.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from visiondock.preprocess import PreprocessSpec

from .augment import AugmentOptions, augmented_tensor
from .backbone import PooledFeatures, Top
from .features import BATCH_SIZE, prepared_batches

log = logging.getLogger(__name__)
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)
DEFAULT_WEIGHT_DECAY = 1e-3
MAX_HISTORY = 60
EpochCallback = Callable[[int, int, dict[str, float]], None]


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
    # One entry per full pass over the training features (an L-BFGS iteration or an epoch).
    history: list[dict[str, float]] = field(default_factory=list)


def fit_linear_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
                    num_outputs: int, multilabel: bool, weight_decay: float, seed: int,
                    max_iter: int = 300) -> HeadFit:
    """Logistic regression on features by full-batch L-BFGS, with the loss curves it went through."""
    torch.manual_seed(seed)
    x, y = _tensors(train_x, train_y, multilabel)
    vx, vy = _tensors(val_x, val_y, multilabel)
    head = nn.Linear(x.shape[1], num_outputs)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
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
                val_logits = head(vx)
                entry["val_loss"] = round(loss_fn(val_logits, vy, multilabel=multilabel).item(), 6)
                entry["val_metric"] = round(score(val_logits, vy, multilabel=multilabel), 6)
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
    best: tuple[float, dict[str, Any]] | None = None
    stale = 0
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
                val_logits = head(vx)
            entry["val_loss"] = round(loss_fn(val_logits, vy, multilabel=multilabel).item(), 6)
            entry["val_metric"] = round(score(val_logits, vy, multilabel=multilabel), 6)
        history.append(entry)
        current = entry.get("val_loss", entry["train_loss"])
        if best is None or current < best[0]:
            best, stale = (current, copy.deepcopy(head.state_dict())), 0
        else:
            stale += 1
            if stale >= patience:
                break
    assert best is not None
    head.load_state_dict(best[1])
    return HeadFit(head=head.eval(), weight_decay=weight_decay, history=history)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch with `count` intra-op threads inside the block.

    A head's matrices are small: one thread does them in a fraction of a second, while
    two threads synchronizing on a busy CPU made the same L-BFGS fit 30x slower here.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *, kind: str,
             num_outputs: int, multilabel: bool, seed: int, weight_decay: float | None = None) -> HeadFit:
    """Fit a head; without a given weight decay, the one with the lowest validation loss is chosen."""
    with torch_threads(1):
        return _fit_head(train_x, train_y, val_x, val_y, kind=kind, num_outputs=num_outputs, multilabel=multilabel,
                         seed=seed, weight_decay=weight_decay)


def _fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *, kind: str,
              num_outputs: int, multilabel: bool, seed: int, weight_decay: float | None) -> HeadFit:
    fit = fit_linear_head if kind == "linear" else fit_mlp_head
    if weight_decay is not None or len(val_x) < 5:
        return fit(train_x, train_y, val_x, val_y, num_outputs=num_outputs, multilabel=multilabel,
                   weight_decay=weight_decay or DEFAULT_WEIGHT_DECAY, seed=seed)
    fits = [fit(train_x, train_y, val_x, val_y, num_outputs=num_outputs, multilabel=multilabel,
                weight_decay=decay, seed=seed) for decay in WEIGHT_DECAYS]
    vx, vy = _tensors(val_x, val_y, multilabel)

    def val_loss(candidate: HeadFit) -> float:
        with torch.no_grad():
            return loss_fn(candidate.head(vx), vy, multilabel=multilabel).item()

    return min(fits, key=val_loss)


def head_logits(head: nn.Module, features: np.ndarray) -> np.ndarray:
    with torch_threads(1), torch.inference_mode():
        return head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()


def activate(logits: np.ndarray, *, multilabel: bool) -> np.ndarray:
    """Logits → probabilities as the exported model outputs them (softmax or sigmoids)."""
    tensor = torch.from_numpy(logits)
    return (torch.sigmoid(tensor) if multilabel else torch.softmax(tensor, dim=1)).numpy()


# -- advanced: fine-tuning ------------------------------------------------------------------
@dataclass(frozen=True)
class FineTuneOptions:
    epochs: int = 10
    batch_size: int = BATCH_SIZE
    # The upper blocks; the head learns 10x faster. Adam moves every weight by about this
    # much per step, so pretrained convolutions need it small.
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 3
    # No smoothing by default: the epoch kept is chosen on plain validation loss, what training lowers.
    label_smoothing: float = 0.0
    dropout: float = 0.2
    augment: AugmentOptions = field(default_factory=AugmentOptions)


@dataclass
class FineTuneResult:
    head: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int


def fine_tune(top: Top, head: nn.Linear, trunk: Callable[[np.ndarray], np.ndarray],
              train_images: Sequence[Image.Image], train_targets: np.ndarray, val_maps: np.ndarray,
              val_targets: np.ndarray, *, spec: PreprocessSpec, multilabel: bool, options: FineTuneOptions,
              seed: int, on_epoch: EpochCallback | None = None, progress: bool = True) -> FineTuneResult:
    """Fine-tune `top` and `head` in place on augmented training images; keep the best epoch.

    `trunk` maps a batch of input tensors to the feature maps `top` starts from;
    `val_maps` are the trunk's maps of the (unaugmented) validation images. The
    epoch with the lowest validation loss is kept (the last one without validation);
    epoch 0 is the starting point (the pretrained blocks and the quick head), so when
    no epoch of fine-tuning beats it on validation, the result is that model.
    """
    device = next(top.parameters()).device
    torch.manual_seed(seed)
    classifier = nn.Sequential(nn.Dropout(options.dropout), head).to(device)
    optimizer = torch.optim.AdamW([
        {"params": [p for p in top.parameters() if p.requires_grad], "lr": options.learning_rate},
        {"params": head.parameters(), "lr": options.learning_rate * 10},
    ], weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / options.batch_size)
    total_steps = max(1, steps_per_epoch * options.epochs)
    warmup = max(1, steps_per_epoch // 2)

    def rate(step: int) -> float:
        # Linear warm-up over half an epoch (the head starts trained, the blocks pretrained), then cosine.
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    dtype = torch.float32 if multilabel else torch.int64
    y_all = torch.from_numpy(train_targets).to(dtype)
    val_y = torch.from_numpy(val_targets).to(dtype).to(device)
    val_x = torch.from_numpy(val_maps).to(device) if len(val_maps) else None

    def validate() -> dict[str, float]:
        if val_x is None:
            return {}
        with torch.inference_mode():
            val_logits = torch.cat([classifier(top(chunk)) for chunk in val_x.split(64)])
        return {"val_loss": round(loss_fn(val_logits, val_y, multilabel=multilabel).item(), 6),
                "val_metric": round(score(val_logits, val_y, multilabel=multilabel), 6)}

    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Any], dict[str, Any]] | None = None
    top.eval()
    classifier.eval()
    initial = {"epoch": 0, **validate()}
    if val_x is not None:
        history.append(initial)
        best = (initial["val_loss"], 0, copy.deepcopy(top.state_dict()), copy.deepcopy(head.state_dict()))
    stale = 0
    for epoch in range(1, options.epochs + 1):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(train_images))
        # One generator per image and epoch: the same views whatever the thread timing.
        views = [(int(i), np.random.default_rng([seed, epoch, int(i)])) for i in order]
        top.train()
        classifier.train()
        loss_sum, metric_sum, seen = 0.0, 0.0, 0
        with tqdm(total=len(views), desc=f"epoch {epoch}/{options.epochs}", unit="img",
                  disable=not progress, leave=False) as bar:
            for start, batch in prepared_batches(
                views, lambda view: augmented_tensor(train_images[view[0]], spec, view[1], options.augment),
                batch_size=options.batch_size,
            ):
                index = torch.from_numpy(order[start:start + options.batch_size])
                maps = torch.from_numpy(trunk(batch)).to(device)
                targets = y_all[index].to(device)
                optimizer.zero_grad()
                logits = classifier(top(maps))
                loss = loss_fn(logits, targets, multilabel=multilabel,
                               label_smoothing=0.0 if multilabel else options.label_smoothing)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(index)
                metric_sum += score(logits.detach(), targets, multilabel=multilabel) * len(index)
                seen += len(index)
                bar.update(len(index))
        top.eval()
        classifier.eval()
        entry = {"epoch": epoch, "train_loss": round(loss_sum / seen, 6), "train_metric": round(metric_sum / seen, 6),
                 **validate()}
        history.append(entry)
        log.info("epoch %d/%d: %s", epoch, options.epochs, entry)
        if on_epoch is not None:
            on_epoch(epoch, options.epochs, entry)
        current = entry.get("val_loss", -epoch)  # without validation: the last epoch
        if best is None or current < best[0]:
            best = (current, epoch, copy.deepcopy(top.state_dict()), copy.deepcopy(head.state_dict()))
            stale = 0
        else:
            stale += 1
            if val_x is not None and stale >= options.patience:
                log.info("validation loss has not improved for %d epochs: stopping", stale)
                break
    assert best is not None
    top.load_state_dict(best[2])
    head.load_state_dict(best[3])
    top.eval()
    epochs_run = sum(1 for entry in history if entry["epoch"] > 0)
    return FineTuneResult(head=head.eval(), history=history, best_epoch=best[1], epochs_run=epochs_run)


# -- the exported graph -----------------------------------------------------------------------
class ImageClassifier(nn.Module):
    """Backbone, pooling, head and softmax (or sigmoids): the graph that is exported to ONNX."""

    def __init__(self, features: PooledFeatures, head: nn.Module, *, multilabel: bool) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.multilabel = multilabel

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(image))
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
