"""Advanced mode: fine-tune the backbone's upper blocks and the head on augmented images.

Starts from the quick head on the pretrained blocks; the frozen trunk below the
fine-tuned blocks runs in ONNX Runtime (or on the GPU), so the CPU spends its time on
the blocks that learn. Early stopping on validation loss keeps the best epoch.

Augmentation is in Pillow and NumPy (seeded, no torchvision): each call draws from the
generator it is given, so a run with the same seed sees the same augmented images, and
the output is normalized exactly as `visiondock.preprocess.to_tensor` normalizes the
unaugmented images. Not options, tuned here: the augmentation strengths, the head's
learning-rate factor, weight decay, patience, dropout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import nn
from tqdm import tqdm

from visiondock.preprocess import PreprocessSpec, normalize
from visiondock.vocabulary import ADVANCED

from .backbone import Top
from .features import prepared_batches
from .heads import loss_fn, score, validation_point
from .loop import KeepBest, warmup_cosine
from .options import scoped_default

log = logging.getLogger(__name__)
EpochCallback = Callable[[int, int, dict[str, float]], None]
# The head learns this much faster than the fine-tuned blocks.
HEAD_LR_FACTOR = 10


# -- augmentation --------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentOptions:
    # Random resized crop: share of the image's area kept, and the aspect ratio range.
    min_area: float = 0.4
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    # Brightness, contrast and saturation each scaled by a factor in [1 - j, 1 + j].
    jitter: float = 0.25


FACE_AUGMENT = AugmentOptions(min_area=0.7, ratio=(0.85, 1.15), jitter=0.2)


def random_resized_crop(image: Image.Image, rng: np.random.Generator, size: int,
                        options: AugmentOptions) -> Image.Image:
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(options.min_area, 1.0)
        log_ratio = rng.uniform(math.log(options.ratio[0]), math.log(options.ratio[1]))
        aspect = math.exp(log_ratio)
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    # Extreme aspect ratios: the centred square.
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def color_jitter(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    if strength <= 0:
        return image
    enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    for index in rng.permutation(len(enhancers)):
        image = enhancers[int(index)](image).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return image


def augmented_tensor(image: Image.Image, spec: PreprocessSpec, rng: np.random.Generator,
                     options: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """One random view of `image` as a 3xSxS float32 model input."""
    view = random_resized_crop(image, rng, spec.size, options)
    if options.flip and rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    view = color_jitter(view, rng, options.jitter)
    return normalize(np.asarray(view, dtype=np.uint8), spec)


# -- fine-tuning ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FineTuneOptions:
    epochs: int = scoped_default("epochs", ADVANCED)
    batch_size: int = scoped_default("batch_size", ADVANCED)
    # The upper blocks; the head learns HEAD_LR_FACTOR times faster. Adam moves every weight by
    # about this much per step, so pretrained convolutions need it small.
    learning_rate: float = scoped_default("learning_rate", ADVANCED)
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


def fine_tune(top: Top, head: nn.Module, trunk: Callable[[np.ndarray], np.ndarray],
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
        {"params": head.parameters(), "lr": options.learning_rate * HEAD_LR_FACTOR},
    ], weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / options.batch_size)
    total_steps = max(1, steps_per_epoch * options.epochs)
    # Linear warm-up over half an epoch (the head starts trained, the blocks pretrained), then cosine.
    warmup = max(1, steps_per_epoch // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total_steps))
    dtype = torch.float32 if multilabel else torch.int64
    y_all = torch.from_numpy(train_targets).to(dtype)
    val_y = torch.from_numpy(val_targets).to(dtype).to(device)
    val_x = torch.from_numpy(val_maps).to(device) if len(val_maps) else None

    def validate() -> dict[str, float]:
        if val_x is None:
            return {}
        with torch.inference_mode():
            val_logits = torch.cat([classifier(top(chunk)) for chunk in val_x.split(64)])
            return validation_point(val_logits, val_y, multilabel=multilabel)

    history: list[dict[str, float]] = []
    # Without validation the last epoch is kept (its value is -epoch); patience needs validation.
    keep = KeepBest(top, head, patience=options.patience if val_x is not None else None)
    top.eval()
    classifier.eval()
    initial = {"epoch": 0, **validate()}
    if val_x is not None:
        history.append(initial)
        keep.update(0, initial["val_loss"])
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
        keep.update(epoch, entry.get("val_loss", -epoch))
        if keep.should_stop:
            log.info("validation loss has not improved for %d epochs: stopping", keep.stale)
            break
    best_epoch = keep.restore()
    assert best_epoch is not None
    top.eval()
    epochs_run = sum(1 for entry in history if entry["epoch"] > 0)
    return FineTuneResult(head=head.eval(), history=history, best_epoch=best_epoch, epochs_run=epochs_run)
