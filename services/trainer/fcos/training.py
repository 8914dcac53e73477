"""Fit and apply the detector.

`fit_detector` fine-tunes the upper backbone stages, the pyramid and the head on
randomly augmented views; `image_results` runs the fitted detector through the same
path the scoring service takes (`to_tensor` preprocessing, the exported graph,
`decode_detections` into original-image pixels), so metrics and served answers agree;
`evaluate_detector` and `choose_score_threshold` turn those results into held-out
metrics and the served threshold (`services.trainer.evaluation`).

Training runs on the GPU when there is one (bf16 autocast), else on the CPU; worker
processes of a DataLoader make the augmented views (`AugmentedViews`) and their targets
(`ViewBatcher`), each view from a generator of its own (`view_rng`), so the result for a
seed does not depend on how many workers there are. The fitted detector comes back on
the CPU, where export and the metrics run.
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
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from visiondock.postprocess import DEFAULT_MAX_DETECTIONS, Detection, decode_detections
from visiondock.preprocess import PreprocessSpec, normalization, normalize, to_tensor
from visiondock.settings import available_cpus
from visiondock.vocabulary import DEFAULT_BACKBONE, DETECTION

from ..backbone import backbone_spec, load_pretrained
from ..data import TrainingDataError
from ..evaluation import ImageResult, best_f1_threshold, detection_metrics
from ..features import use_cuda
from ..options import check_input_size, scoped_default
from .augment import AugmentOptions, View, plain_view, random_view
from .loss import Targets, batch_targets, detection_loss
from .model import BackboneFeatures, Detector, ExportedDetector, anchor_points, served_outputs, stage_ends
from .samples import DetectionSample, check_samples

INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores")
# Candidates kept for AP: a ranking metric needs the low-score tail that the served threshold cuts.
EVAL_SCORE_THRESHOLD = 0.05
LOSS_KEYS = ("loss", "cls", "box", "ctr")
# Worker processes making the augmented views; None: automatic (`loader_workers`). A module
# setting, not a training option: the count changes how fast views come, never which.
LOADER_WORKERS: int | None = None
# Four workers make views faster than the training step takes batches of them; more would mostly
# wait on the step (view and epoch times: docs/benchmarks.md).
MAX_LOADER_WORKERS = 4


@dataclass
class DetectorOptions:
    """Hyperparameters. Backbone, input size, epochs, batch size, learning rate and seed are
    training options (their defaults declared in `TrainingOptions`); the rest are not: the
    defaults are what bench/training_detection.py cross-validates on the grocery photos
    (2 CPU cores: about 4.5-5.5 minutes per 21-image training run)."""

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
    # With validation images: stop after this many epochs without a better validation mAP@[.5:.95].
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
        device = self.detector.anchor_points()[0].device  # the GPU while validating during training, else the CPU
        boxes, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = np.stack([to_tensor(img, self.preprocess) for img in images[start:start + batch_size]])
                b, s = module(torch.from_numpy(batch).to(device))
                boxes.append(b.cpu().numpy())
                scores.append(s.cpu().numpy())
        if not boxes:
            return np.zeros((0, 0, 4), np.float32), np.zeros((0, 0, len(self.label_names)), np.float32)
        return np.concatenate(boxes), np.concatenate(scores)

    def predict(self, images: Sequence[Image.Image], *, score_threshold: float | None = None) -> list[list[Detection]]:
        """Detections per image in original pixels, exactly as the scoring service answers."""
        boxes, scores = self.raw_outputs(images)
        return self.detections(boxes, scores, [img.size for img in images], score_threshold=score_threshold)

    def detections(self, boxes: np.ndarray, scores: np.ndarray, sizes: Sequence[tuple[int, int]], *,
                   score_threshold: float | None = None) -> list[list[Detection]]:
        """The exported graph's outputs for images of these (width, height) → their detections."""
        threshold = self.thresholds["score"] if score_threshold is None else score_threshold
        return [decode_detections(b, s, self.label_names, width=width, height=height,
                                  score_threshold=threshold, nms_iou=self.thresholds["nms_iou"],
                                  max_detections=DEFAULT_MAX_DETECTIONS)
                for (width, height), b, s in zip(sizes, boxes, scores, strict=True)]


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


def loader_workers() -> int:
    """How many processes make views: LOADER_WORKERS when set, else from the CPUs this process may use.

    On 2 CPUs or fewer none: the training step wants both cores. On grocery photos a worker on
    2 cores made epochs no faster, its first epoch slower, and single epochs stalled when other
    load came, while making views is a small part of a CPU epoch (docs/benchmarks.md). Elsewhere
    two CPUs stay with the training loop (the optimizer step, kernel launches, validation) and the
    rest make views, up to MAX_LOADER_WORKERS.
    """
    if LOADER_WORKERS is not None:
        return LOADER_WORKERS
    cpus = available_cpus()  # a pod's CPU limit, not the node's cores
    return 0 if cpus <= 2 else min(MAX_LOADER_WORKERS, cpus - 2)


def view_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one augmented view: the same view whichever worker makes it, in whatever order."""
    return np.random.default_rng([seed, epoch, index])


class AugmentedViews(Dataset[tuple[np.ndarray, View]]):
    """Training samples as augmented views, keyed by (epoch, sample index): normalized
    3 x S x S pixels and the view (its boxes, labels and ignore regions)."""

    def __init__(self, samples: Sequence[DetectionSample], spec: PreprocessSpec, options: DetectorOptions) -> None:
        self.samples = samples
        self.spec = spec
        self.seed = options.seed
        self.augment = options.augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, View]:
        epoch, index = key
        view = random_view(self.samples[index], self.spec.size, view_rng(self.seed, epoch, index), self.augment)
        return normalize(view.pixels, self.spec), view


@dataclass
class Batch:
    """Model inputs [N, 3, S, S] and their targets, moved and pinned together."""

    images: torch.Tensor
    targets: Targets

    def __len__(self) -> int:
        return self.images.shape[0]

    def _map(self, move: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        t = self.targets
        return Batch(move(self.images), Targets(move(t.classes), move(t.boxes), move(t.positive), move(t.ignored),
                                                move(t.centreness)))

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread (pin_memory=True): page-locked host memory."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device) -> Batch:
        # From pinned memory the copy runs asynchronously, overlapping the previous step's kernels.
        return self._map(lambda t: t.to(device, non_blocking=True))


class ViewBatcher:
    """The loader's collate function: stacks views and assigns their targets, in the worker
    that made them, so the training loop only moves finished batches."""

    def __init__(self, options: DetectorOptions, num_classes: int) -> None:
        # The detector's own anchor points, on the CPU: workers must not touch the GPU.
        self.points, self.strides = anchor_points(options.input_size)
        self.num_classes = num_classes
        self.bounds = options.level_bounds
        self.radius = options.centre_radius

    def __call__(self, items: Sequence[tuple[np.ndarray, View]]) -> Batch:
        targets = batch_targets(self.points, self.strides, [view for _, view in items], self.num_classes,
                                bounds=self.bounds, radius=self.radius)
        return Batch(torch.from_numpy(np.stack([pixels for pixels, _ in items])), targets)


def _loss(detector: Detector, batch: Batch, options: DetectorOptions) -> dict[str, torch.Tensor]:
    # bf16 on CUDA: tensor-core convolutions at half the memory traffic, and no loss scaling
    # needed (float32's range). The loss stays float32: box sides in input pixels need more
    # than bf16's 8 significant bits, and the focal loss sums thousands of small terms.
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=batch.images.is_cuda):
        logits, distances, centreness = detector(batch.images)
    return detection_loss(logits.float(), detector.decode(distances.float()), centreness.float(), batch.targets,
                          box_weight=options.box_weight)


class ValidationSet:
    """Validation images made into batches once (the pixels and targets of their plain views, what
    the scoring service feeds the model), then scored every epoch in one forward pass each: the
    loss, and the served boxes for mAP (`validate`). Resizing the photos again every epoch, and a
    second pass for the metrics, had taken longer than the training steps of a small set.

    The pixels stay uint8 (0.6 MB an image at 448 px, a quarter of the float input) and are
    normalized on the device, with the float32 arithmetic of `visiondock.preprocess.normalize`.
    """

    def __init__(self, samples: list[DetectionSample], spec: PreprocessSpec, options: DetectorOptions,
                 batcher: ViewBatcher, *, pin: bool) -> None:
        self.scale, self.shift = (torch.from_numpy(values).reshape(1, 3, 1, 1) for values in normalization(spec))
        self.parts: list[tuple[list[DetectionSample], Batch]] = []
        for start in range(0, len(samples), options.batch_size):
            part = samples[start:start + options.batch_size]
            batch = batcher([(view.pixels, view) for view in (plain_view(s, spec) for s in part)])
            self.parts.append((part, batch.pin_memory() if pin else batch))

    def __len__(self) -> int:
        return sum(len(part) for part, _ in self.parts)

    def inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [N, S, S, 3] → the model's normalized float32 [N, 3, S, S], on their device."""
        scale, shift = self.scale.to(pixels.device), self.shift.to(pixels.device)
        return pixels.permute(0, 3, 1, 2).float() * scale - shift


def validate(fitted: FittedDetector, validation: ValidationSet, options: DetectorOptions) -> dict[str, float]:
    """Validation loss, mAP@0.5 and mAP@[.5:.95] of the detector as it is now.

    In float32 as exported, so the metrics are those of `evaluate_detector` (the loss too runs
    without the training steps' bf16 autocast).
    """
    detector = fitted.detector
    device = detector.anchor_points()[0].device
    total, results = 0.0, []
    with torch.inference_mode():
        for part, batch in validation.parts:
            batch = batch.to(device)
            logits, distances, centreness = detector(validation.inputs(batch.images))
            losses = detection_loss(logits, detector.decode(distances), centreness, batch.targets,
                                    box_weight=options.box_weight)
            total += float(losses["loss"]) * len(batch)
            boxes, scores = served_outputs(detector, logits, distances, centreness)
            found = fitted.detections(boxes.cpu().numpy(), scores.cpu().numpy(), [(s.width, s.height) for s in part],
                                      score_threshold=EVAL_SCORE_THRESHOLD)
            results += [detection_result(s, d, fitted.label_names) for s, d in zip(part, found, strict=True)]
    metrics = detection_metrics(results, fitted.label_names, score_threshold=fitted.thresholds["score"])
    return {"val_loss": total / max(len(validation), 1), "val_map_50": metrics["map_50"] or 0.0,
            "val_map_50_95": metrics["map_50_95"] or 0.0}


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

    With validation images, each epoch reports validation loss, mAP@0.5 and mAP@[.5:.95];
    the weights of the epoch with the best mAP@[.5:.95] are kept (ties: mAP@0.5, then the
    loss) and training stops after `patience` epochs without improvement. Without them it
    trains `epochs` epochs and keeps the last weights. The served score threshold stays the
    default: `choose_score_threshold` picks it.
    """
    if not label_names:
        raise TrainingDataError("a detector needs at least one label")
    if not any(len(s.boxes) for s in train):
        raise TrainingDataError("no training image has a box; draw some boxes and train again")
    check_samples(train, len(label_names), "training")
    check_samples(validation, len(label_names), "validation")
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)  # the epochs' orders; each view has its own (view_rng)
    num_classes = len(label_names)
    spec = PreprocessSpec(size=options.input_size, resize=options.input_size, policy="stretch")
    device = torch.device("cuda") if use_cuda() else torch.device("cpu")
    detector = build_detector(options, num_classes).to(device)

    head_params = [*detector.pyramid.parameters(), *detector.head.parameters()]
    tuned_params = [p for p in detector.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": head_params, "lr": options.head_lr},
                                   {"params": tuned_params, "lr": options.learning_rate}],
                                  weight_decay=options.weight_decay, foreach=True)
    base_lrs = [options.head_lr, options.learning_rate]
    steps_per_epoch = math.ceil(len(train) / options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    warmup = min(max(1, round(options.warmup_epochs * steps_per_epoch)), max(total_steps, 1))

    workers = loader_workers()
    # Every epoch's batches in one pass of the loader: its workers make the next epoch's first views while
    # this epoch ends and validates, where a pass per epoch started each epoch with the device waiting.
    # The keys carry the epoch because the workers, making views ahead of the loop, never see its state.
    orders = [rng.permutation(len(train)) for _ in range(options.epochs)]
    batch_keys = [[(epoch, int(i)) for i in order[start:start + options.batch_size]]
                  for epoch, order in enumerate(orders, start=1)
                  for start in range(0, len(order), options.batch_size)]
    batcher = ViewBatcher(options, num_classes)
    loader = DataLoader(AugmentedViews(train, spec, options), batch_sampler=batch_keys, collate_fn=batcher,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        # Its own generator (only worker seeds come from it): the global torch stream stays
                        # the same whatever the worker count.
                        generator=torch.Generator().manual_seed(options.seed))

    fitted_params = asdict(options) | {"frozen_blocks": detector.backbone.frozen_blocks,
                                       "train_images": len(train), "validation_images": len(validation),
                                       "architecture": "fcos-p3p5-efficientnet-lite",
                                       "device": device.type, "loader_workers": workers}
    fitted = FittedDetector(detector, list(label_names), spec,
                            {"score": options.score_threshold, "nms_iou": options.nms_iou}, [], fitted_params)
    validation_set = (ValidationSet(validation, spec, options, batcher, pin=device.type == "cuda")
                      if validation else None)
    best: tuple[float, float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, step = 0, 0
    views = iter(loader)
    bar = tqdm(range(1, options.epochs + 1), desc="train detector", unit="epoch", disable=not progress)
    for epoch in bar:
        epoch_started = time.perf_counter()
        detector.train()
        # Summed on the device: reading each step's losses would wait for the GPU every step.
        sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64, device=device)
        waited = 0.0  # in the DataLoader: time the device could have been fed and was not
        for _ in range(steps_per_epoch):
            asked = time.perf_counter()
            batch = next(views)
            waited += time.perf_counter() - asked
            batch = batch.to(device)
            factor = _schedule(step, warmup, total_steps)
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * factor
            losses = _loss(detector, batch, options)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            nn.utils.clip_grad_norm_([*head_params, *tuned_params], 10.0)
            optimizer.step()
            step += 1
            sums += torch.stack([losses[key].detach() for key in LOSS_KEYS]).double() * len(batch)
        detector.eval()
        totals = dict(zip(LOSS_KEYS, sums.tolist(), strict=True))
        record: dict[str, Any] = {"epoch": epoch} | {f"train_{k}" if k != "loss" else "train_loss": v / len(train)
                                                    for k, v in totals.items()}
        if validation_set is not None:
            record |= validate(fitted, validation_set, options)
            # The COCO mAP first: mAP@0.5 reaches 1.0 early on shelf photos and then cannot tell
            # epochs apart, while their boxes still get tighter.
            score = (float(record["val_map_50_95"]), float(record["val_map_50"]), -float(record["val_loss"]))
            if best is None or score > best:
                best, best_epoch = score, epoch
                best_state = copy.deepcopy(detector.state_dict())
        record["seconds"] = time.perf_counter() - epoch_started
        record["data_wait_seconds"] = waited
        fitted.history.append(record)
        bar.set_postfix({k: round(v, 3) for k, v in record.items() if k in ("train_loss", "val_loss", "val_map_50_95")})
        if on_epoch is not None:
            on_epoch(epoch, {k: float(v) for k, v in record.items() if k != "epoch"})
        if validation and epoch - best_epoch >= options.patience:
            break
    bar.close()
    del views, loader  # the workers end now (early stopping leaves batches unread), not at garbage collection

    if best_state is not None:
        detector.load_state_dict(best_state)
    # Export, ONNX parity, INT8 calibration and the metrics after training all run on the CPU.
    detector.to("cpu").eval()
    fitted.params |= {"best_epoch": best_epoch or len(fitted.history), "epochs_run": len(fitted.history),
                      "seconds": round(time.perf_counter() - started, 1)}
    return fitted
