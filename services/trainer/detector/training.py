"""Fit and apply the detector.

`fit_detector` fine-tunes the upper backbone stages, the pyramid and the head on
randomly augmented views; `image_results` runs the fitted detector through the same
path the scoring service takes (`to_tensor` preprocessing, the exported graph,
`decode_detections` into original-image pixels), so metrics and served answers agree;
`evaluate_detector` and `choose_score_threshold` turn those results into held-out
metrics and the served threshold (`services.trainer.evaluation`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from visiondock.postprocess import DEFAULT_MAX_DETECTIONS, Detection, decode_detections
from visiondock.preprocess import PreprocessSpec, normalize, to_tensor
from visiondock.vocabulary import DEFAULT_BACKBONE, DETECTION

from ..backbone import backbone_spec, load_pretrained
from ..data import TrainingDataError
from ..evaluation import ImageResult, best_f1_threshold, detection_metrics
from ..options import check_input_size, scoped_default
from .augment import AugmentOptions, plain_view, random_view
from .loss import batch_targets, detection_loss
from .model import BackboneFeatures, Detector, ExportedDetector, stage_ends
from .samples import DetectionSample, check_samples

INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores")
# Candidates kept for AP: a ranking metric needs the low-score tail that the served threshold cuts.
EVAL_SCORE_THRESHOLD = 0.05


@dataclass
class DetectorOptions:
    """Hyperparameters. Backbone, input size, epochs, batch size, learning rate and seed are
    training options (their defaults declared in `TrainingOptions`); the rest are not: the
    defaults are what bench/training_detection.py cross-validates on the grocery photos
    (2 CPU cores: about 4-6 minutes per 21-image training run)."""

    backbone: str = DEFAULT_BACKBONE
    # The square input side; the whole frame is stretched to it. A multiple of 32.
    input_size: int = scoped_default("input_size", DETECTION)
    epochs: int = scoped_default("epochs", DETECTION)
    batch_size: int = scoped_default("batch_size", DETECTION)
    seed: int = 0
    # Of the fine-tuned backbone stages; the pyramid and the head learn `head_lr_factor` times faster.
    learning_rate: float = scoped_default("learning_rate", DETECTION)
    head_lr_factor: float = 5.0
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    # Leading backbone blocks (with the stem) kept at their ImageNet weights;
    # None: every block up to the stride-8 stage, fine-tuning the stride-16 and -32 stages.
    frozen_blocks: int | None = None
    channels: int = 64
    head_depth: int = 2
    # Largest side distance (input pixels) that sends a box to the stride-16, then the stride-32 level.
    level_bounds: tuple[float, float] = (64.0, 128.0)
    centre_radius: float = 1.5
    box_weight: float = 1.0
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    # With validation images: stop after this many epochs without a better validation mAP@0.5.
    patience: int = 15
    # Served thresholds: the score threshold is the best-F1 one on validation images when
    # there are some, else this default (the best-F1 one on grocery out-of-fold detections
    # was 0.51); non-maximum suppression IoU is fixed.
    score_threshold: float = 0.5
    nms_iou: float = 0.5

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)  # a clear error for an unknown name
        check_input_size(self.input_size)
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError("epochs must be >= 0 and batch_size >= 1")

    @property
    def head_lr(self) -> float:
        return self.learning_rate * self.head_lr_factor


def build_detector(options: DetectorOptions, num_classes: int) -> Detector:
    # "Same" padding computed for this size once (static): the exported graph gets constant
    # Pad nodes instead of shape arithmetic (see backbone.py).
    model = load_pretrained(options.backbone, options.input_size)
    frozen = options.frozen_blocks
    if frozen is None:
        frozen = stage_ends(model._blocks)[0] + 1
    backbone = BackboneFeatures(model, frozen)
    return Detector(backbone, num_classes, size=options.input_size, channels=options.channels,
                    head_depth=options.head_depth)


@dataclass
class FittedDetector:
    detector: Detector
    label_names: list[str]
    preprocess: PreprocessSpec
    thresholds: dict[str, float]
    history: list[dict[str, Any]]
    params: dict[str, Any]

    def export_module(self) -> nn.Module:
        """The graph to export: image [N, 3, S, S] → boxes [N, A, 4] fractions, scores [N, A, C]."""
        return ExportedDetector(copy.deepcopy(self.detector), plain_padding=True).eval()

    def raw_outputs(self, images: Sequence[Image.Image], *, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The exported graph's outputs for images, computed in torch."""
        module = ExportedDetector(self.detector).eval()
        boxes, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = np.stack([to_tensor(img, self.preprocess) for img in images[start:start + batch_size]])
                b, s = module(torch.from_numpy(batch))
                boxes.append(b.numpy())
                scores.append(s.numpy())
        if not boxes:
            return np.zeros((0, 0, 4), np.float32), np.zeros((0, 0, len(self.label_names)), np.float32)
        return np.concatenate(boxes), np.concatenate(scores)

    def predict(self, images: Sequence[Image.Image], *, score_threshold: float | None = None) -> list[list[Detection]]:
        """Detections per image in original pixels, exactly as the scoring service answers."""
        boxes, scores = self.raw_outputs(images)
        threshold = self.thresholds["score"] if score_threshold is None else score_threshold
        return [decode_detections(b, s, self.label_names, width=img.width, height=img.height,
                                  score_threshold=threshold, nms_iou=self.thresholds["nms_iou"],
                                  max_detections=DEFAULT_MAX_DETECTIONS)
                for img, b, s in zip(images, boxes, scores, strict=True)]


def detection_result(sample: DetectionSample, detections: Sequence[Detection], label_names: list[str]) -> ImageResult:
    """A sample's ground truth beside the detections found in it, for the metrics."""
    index = {name: i for i, name in enumerate(label_names)}
    return ImageResult(
        width=sample.width, height=sample.height, true_boxes=sample.boxes, true_labels=sample.labels,
        boxes=np.array([[d.x1, d.y1, d.x2, d.y2] for d in detections], dtype=np.float32).reshape(-1, 4),
        labels=np.array([index[d.label] for d in detections], dtype=np.int64),
        scores=np.array([d.score for d in detections], dtype=np.float32))


def image_results(fitted: FittedDetector, samples: Sequence[DetectionSample]) -> list[ImageResult]:
    """Every candidate scoring at least EVAL_SCORE_THRESHOLD in each sample, beside its ground truth."""
    found = fitted.predict([s.image for s in samples], score_threshold=EVAL_SCORE_THRESHOLD)
    return [detection_result(sample, detections, fitted.label_names)
            for sample, detections in zip(samples, found, strict=True)]


def evaluate_detector(fitted: FittedDetector, samples: Sequence[DetectionSample], *,
                      score_threshold: float | None = None) -> dict[str, Any]:
    """mAP@0.5, mAP@[.5:.95], per-class AP/precision/recall on held-out samples (see evaluation.py).

    AP ranks every candidate scoring at least EVAL_SCORE_THRESHOLD; precision and
    recall are those of the served answers (`score_threshold`, default fitted.thresholds["score"]).
    """
    check_samples(list(samples), len(fitted.label_names), "evaluation")
    results = image_results(fitted, samples)
    threshold = fitted.thresholds["score"] if score_threshold is None else score_threshold
    return detection_metrics(results, fitted.label_names, score_threshold=threshold)


def choose_score_threshold(fitted: FittedDetector, validation: Sequence[DetectionSample]) -> float:
    """The served score threshold: the best-F1 one on validation images, or the default without them."""
    if not validation:
        return fitted.thresholds["score"]
    return best_f1_threshold(image_results(fitted, validation), len(fitted.label_names),
                             floor=EVAL_SCORE_THRESHOLD, ceiling=0.9)


def _batch(views: list, spec: PreprocessSpec) -> torch.Tensor:
    return torch.from_numpy(np.stack([normalize(v.pixels, spec) for v in views]))


def _loss(detector: Detector, views: list, spec: PreprocessSpec, options: DetectorOptions,
          num_classes: int) -> dict[str, torch.Tensor]:
    targets = batch_targets(detector.points, detector.strides, views, num_classes,
                            bounds=options.level_bounds, radius=options.centre_radius)
    logits, distances, centreness = detector(_batch(views, spec))
    return detection_loss(logits, detector.decode(distances), centreness, targets, box_weight=options.box_weight)


def _validation_loss(detector: Detector, samples: list[DetectionSample], spec: PreprocessSpec,
                     options: DetectorOptions, num_classes: int) -> float:
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(samples), options.batch_size):
            views = [plain_view(s, spec) for s in samples[start:start + options.batch_size]]
            total += float(_loss(detector, views, spec, options, num_classes)["loss"]) * len(views)
            count += len(views)
    return total / max(count, 1)


def _schedule(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero: a learning-rate multiplier."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def fit_detector(
    train: list[DetectionSample],
    validation: list[DetectionSample],
    label_names: list[str],
    options: DetectorOptions,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> FittedDetector:
    """Train a detector; deterministic for options.seed.

    With validation images, each epoch reports validation loss and mAP@0.5, the best
    epoch's weights are kept and training stops after `patience` epochs without
    improvement. Without them it trains `epochs` epochs and keeps the last weights.
    The served score threshold stays the default: `choose_score_threshold` picks it.
    """
    if not label_names:
        raise TrainingDataError("a detector needs at least one label")
    if not any(len(s.boxes) for s in train):
        raise TrainingDataError("no training image has a box; draw some boxes and train again")
    check_samples(train, len(label_names), "training")
    check_samples(validation, len(label_names), "validation")
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    num_classes = len(label_names)
    spec = PreprocessSpec(size=options.input_size, resize=options.input_size, policy="stretch")
    detector = build_detector(options, num_classes)

    head_params = [*detector.pyramid.parameters(), *detector.head.parameters()]
    tuned_params = [p for p in detector.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": head_params, "lr": options.head_lr},
                                   {"params": tuned_params, "lr": options.learning_rate}],
                                  weight_decay=options.weight_decay, foreach=True)
    base_lrs = [options.head_lr, options.learning_rate]
    steps_per_epoch = math.ceil(len(train) / options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    warmup = min(max(1, round(options.warmup_epochs * steps_per_epoch)), max(total_steps, 1))

    fitted_params = asdict(options) | {"frozen_blocks": detector.backbone.frozen_blocks,
                                       "train_images": len(train), "validation_images": len(validation),
                                       "architecture": "fcos-p3p5-efficientnet-lite"}
    fitted = FittedDetector(detector, list(label_names), spec,
                            {"score": options.score_threshold, "nms_iou": options.nms_iou}, [], fitted_params)
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, step = 0, 0
    bar = tqdm(range(1, options.epochs + 1), desc="train detector", unit="epoch", disable=not progress)
    for epoch in bar:
        epoch_started = time.perf_counter()
        detector.train()
        sums = {"loss": 0.0, "cls": 0.0, "box": 0.0, "ctr": 0.0}
        order = rng.permutation(len(train))
        for start in range(0, len(order), options.batch_size):
            views = [random_view(train[i], options.input_size, rng, options.augment)
                     for i in order[start:start + options.batch_size]]
            factor = _schedule(step, warmup, total_steps)
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * factor
            losses = _loss(detector, views, spec, options, num_classes)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            nn.utils.clip_grad_norm_([*head_params, *tuned_params], 10.0)
            optimizer.step()
            step += 1
            for key in sums:
                sums[key] += float(losses[key].detach()) * len(views)
        detector.eval()
        record: dict[str, Any] = {"epoch": epoch} | {f"train_{k}" if k != "loss" else "train_loss": v / len(train)
                                                    for k, v in sums.items()}
        if validation:
            record["val_loss"] = _validation_loss(detector, validation, spec, options, num_classes)
            metrics = evaluate_detector(fitted, validation)
            record["val_map_50"] = metrics["map_50"] or 0.0
            record["val_map_50_95"] = metrics["map_50_95"] or 0.0
            score = (record["val_map_50"], -record["val_loss"])
            if best is None or score > best:
                best, best_epoch = score, epoch
                best_state = copy.deepcopy(detector.state_dict())
        record["seconds"] = time.perf_counter() - epoch_started
        fitted.history.append(record)
        bar.set_postfix({k: round(v, 3) for k, v in record.items() if k in ("train_loss", "val_loss", "val_map_50")})
        if on_epoch is not None:
            on_epoch(epoch, {k: float(v) for k, v in record.items() if k != "epoch"})
        if validation and epoch - best_epoch >= options.patience:
            break
    bar.close()

    if best_state is not None:
        detector.load_state_dict(best_state)
    detector.eval()
    fitted.params |= {"best_epoch": best_epoch or len(fitted.history), "epochs_run": len(fitted.history),
                      "seconds": round(time.perf_counter() - started, 1)}
    return fitted
