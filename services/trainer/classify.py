"""Classification runs: multiclass, multilabel and face identification, in quick or advanced mode.

Quick: pooled backbone features (cached per image) and a head. Advanced: the same
head as a start, then the upper backbone blocks fine-tuned on augmented images with
early stopping on validation loss. Face identification finds the largest face in
each image (`visiondock.faces`), classifies the crop, and answers `unknown` below a
threshold tuned on validation faces; images without a face are listed in the run's
report and counted in the test metrics, never dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from visiondock.faces import crop_face, detector_card, find_largest_face
from visiondock.preprocess import PreprocessSpec, to_tensor

from .augment import FACE_AUGMENT, AugmentOptions
from .backbone import PooledFeatures, Top, Trunk, backbone_spec, default_preprocess, load_pretrained, top_start
from .classification import (
    FineTuneOptions,
    ImageClassifier,
    activate,
    fine_tune,
    fit_head,
    head_logits,
)
from .config import RunContext, TrainedModel
from .data import (
    UNKNOWN_TAG,
    ImageRecord,
    TrainingDataError,
    class_targets,
    multilabel_targets,
    rarest_label_groups,
    stratified_split,
)
from .export import run_session, session, top1_agreement
from .features import CACHE_FORMAT, FaceBoxCache, FeatureCache, FrozenRunner, run_batched
from .metrics import (
    choose_confidence_threshold,
    confidence_report,
    multiclass_metrics,
    multilabel_metrics,
    multilabel_thresholds,
)
from .quantize import CALIBRATION_IMAGES, MIN_TOP1_AGREEMENT

log = logging.getLogger(__name__)
PARITY_IMAGES = 16
CHECK_IMAGES = 256
FACE_DETECT_THREADS = 2

Box = tuple[int, int, int, int]


class InputSource:
    """Each record's model input: the decoded image, or its face crop (face preset).

    Classification images are decoded as the scoring service decodes them (JPEG draft
    mode down to the preprocessing size); face images at full size, since the crop
    is a small part of them.
    """

    def __init__(self, ctx: RunContext, spec: PreprocessSpec, *, face: bool) -> None:
        self.loader = ctx.loader
        self.progress = ctx.config.progress
        self.face = face
        self.margin = ctx.config.face_margin
        self.draft = None if face else spec.draft_size
        self.box_cache = FaceBoxCache(ctx.cache_dir, detector_card(self.margin)) if face else None
        self.boxes: dict[str, Box | None] = {}
        self.inputs: dict[str, Image.Image] = {}

    def find_faces(self, records: Sequence[ImageRecord]) -> None:
        """Know each record's face box: from the cache, or by downloading and looking."""
        assert self.box_cache is not None
        unknown = []
        for record in records:
            known, box = self.box_cache.get(record.id)
            if known:
                self.boxes[record.id] = box
            else:
                unknown.append(record)
        if not unknown:
            return
        images = self.loader.load(unknown, draft_size=None, desc="download images")

        def look(record: ImageRecord) -> tuple[str, Box | None]:
            return record.id, find_largest_face(images[record.id], margin=self.margin)

        present = [r for r in unknown if r.id in images]
        with ThreadPoolExecutor(FACE_DETECT_THREADS) as pool:
            for image_id, box in tqdm(pool.map(look, present), total=len(present), desc="find faces", unit="img",
                                      disable=not self.progress):
                self.boxes[image_id] = box
                self.box_cache.put(image_id, box)
                if box is not None:
                    self.inputs[image_id] = crop_face(images[image_id], box)

    def has_input(self, record: ImageRecord) -> bool:
        return not self.face or self.boxes.get(record.id) is not None

    def get(self, records: Sequence[ImageRecord], desc: str = "download images") -> list[Image.Image | None]:
        """The input image of each record (None where it could not be read)."""
        missing = [r for r in records if r.id not in self.inputs and self.has_input(r)]
        if missing:
            images = self.loader.load(missing, draft_size=self.draft, desc=desc)
            for record in missing:
                if record.id in images:
                    image = images[record.id]
                    box = self.boxes.get(record.id)
                    self.inputs[record.id] = crop_face(image, box) if box is not None else image
        return [self.inputs.get(r.id) for r in records]


def _tensors(images: Sequence[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    if not images:
        return np.zeros((0, 3, spec.size, spec.size), dtype=np.float32)
    return np.stack([to_tensor(image, spec) for image in images])


def _check_labels(records: Sequence[ImageRecord], task: str) -> None:
    # Fail fast, before any download, on labels that cannot train a model.
    if task == "multilabel":
        multilabel_targets(records)
    else:
        class_targets(records, unknown_tag=UNKNOWN_TAG if task == "face" else None)


def train_classifier(ctx: RunContext, task: str) -> TrainedModel:
    config = ctx.config
    records = ctx.data.records
    multilabel = task == "multilabel"
    face = task == "face"
    _check_labels(records, task)
    spec = default_preprocess(config.backbone)
    source = InputSource(ctx, spec, face=face)
    recipe = {"backbone": config.backbone, "preprocess": spec.to_json(),
              "crop": detector_card(config.face_margin) if face else None}
    cache = FeatureCache(ctx.cache_dir, recipe)
    models_dir = ctx.cache_dir / "models"
    timings: dict[str, float] = {}

    # -- which images can train: features cached, or pixels that decode -----------------------
    ctx.reporter.stage("features")
    started = time.perf_counter()
    if face:
        source.find_faces(records)
    unreadable = {item["id"] for item in ctx.loader.skipped}
    candidates = [r for r in records if r.id not in unreadable and source.has_input(r)]
    vectors = {r.id: v for r in candidates if (v := cache.get(r.id)) is not None}
    missing = [r for r in candidates if r.id not in vectors]
    if config.mode == "advanced":
        source.get(records)  # fine-tuning needs every image's pixels
    computed = 0
    if missing:
        images = source.get(missing)
        ready = [(r, img) for r, img in zip(missing, images, strict=True) if img is not None]
        runner = FrozenRunner(lambda: PooledFeatures(load_pretrained(config.backbone)),
                              input_size=spec.size, threads=config.cpu_threads,
                              onnx_path=models_dir / f"{config.backbone}-pooled-{spec.size}-f{CACHE_FORMAT}.onnx")
        output = run_batched(runner, [img for _, img in ready], lambda img: to_tensor(img, spec),
                             desc="compute features", progress=config.progress)
        for (record, _), vector in zip(ready, output, strict=True):
            cache.put(record.id, vector)
            vectors[record.id] = vector
        computed = len(ready)
    timings["features_s"] = round(time.perf_counter() - started, 3)
    ctx.report["features"] = {"computed": computed, "cached": len(vectors) - computed}
    log.info("features: %d computed, %d from the cache", computed, len(vectors) - computed)

    # -- targets and split over the readable images ---------------------------------------------
    skipped = {s["id"] for s in ctx.loader.skipped}
    usable = [r for r in records if r.id not in skipped]
    if not usable:
        raise TrainingDataError("none of the labeled images could be read; see the skipped images")
    if multilabel:
        labels, targets = multilabel_targets(usable)
        groups = rarest_label_groups([r.tags for r in usable])
    else:
        labels, targets = class_targets(usable, unknown_tag=UNKNOWN_TAG if face else None)
        groups = [r.tags[0] for r in usable]
    split = stratified_split(groups, [r.split for r in usable], test_fraction=config.test_fraction,
                             validation_fraction=config.validation_fraction, seed=config.seed,
                             never_train=frozenset({UNKNOWN_TAG}) if face else frozenset())
    if face:
        no_face = [{"id": r.id, "filename": r.filename, "split": part} for part in ("train", "validation", "test")
                   for r in (usable[i] for i in getattr(split, part)) if not source.has_input(r)]
        ctx.report["no_face"] = no_face
        if no_face:
            log.warning("%d image(s) show no face the detector can find; listed in the run's report", len(no_face))
        split.train = [i for i in split.train if source.has_input(usable[i]) and targets[i] >= 0]
        split.validation = [i for i in split.validation if source.has_input(usable[i])]
    if multilabel:
        trained = {labels[c] for c in np.flatnonzero(targets[split.train].sum(axis=0) > 0)}
    else:
        trained = {labels[int(targets[i])] for i in split.train}
    lacking = [label for label in labels if label not in trained]
    if lacking:
        why = ("shows a face the detector finds; add frontal photos of them" if face else
               "is on the training side; the project's explicit test split holds all of them")
        raise TrainingDataError(f"no image of {', '.join(map(repr, lacking))} {why}")
    test_with_input = [i for i in split.test if source.has_input(usable[i])]
    if not test_with_input:
        raise TrainingDataError("no images left for the held-out test split; label more images")
    log.info("training %s (%s, %s mode) on %d images, validating on %d, testing on %d", config.model_name, task,
             config.mode, len(split.train), len(split.validation), len(split.test))

    feature_dim = backbone_spec(config.backbone).feature_dim

    def features_of(indices: Sequence[int]) -> np.ndarray:
        if not len(indices):
            return np.zeros((0, feature_dim), np.float32)
        return np.stack([vectors[usable[i].id] for i in indices])

    def known(indices: Sequence[int]) -> list[int]:
        return [i for i in indices if multilabel or targets[i] >= 0]

    # -- fit ----------------------------------------------------------------------------------------
    ctx.reporter.stage("train")
    started = time.perf_counter()
    train_idx, val_known = split.train, known(split.validation)
    fit = fit_head(features_of(train_idx), targets[train_idx], features_of(val_known), targets[val_known],
                   kind=config.head, num_outputs=len(labels), multilabel=multilabel, seed=config.seed,
                   weight_decay=config.weight_decay)
    params: dict[str, Any] = {"head": config.head, "weight_decay": fit.weight_decay}
    history = fit.history
    model = load_pretrained(config.backbone)
    head = fit.head

    def from_features(indices: Sequence[int]) -> np.ndarray:
        return activate(head_logits(head, features_of(indices)), multilabel=multilabel)

    probabilities: Callable[[Sequence[int]], np.ndarray] = from_features
    if config.mode == "advanced":
        start = top_start(model, config.fine_tune_stages)
        trunk_file = f"{config.backbone}-trunk{start}-{spec.size}-f{CACHE_FORMAT}.onnx"
        trunk_runner = FrozenRunner(lambda: Trunk(load_pretrained(config.backbone), start), input_size=spec.size,
                                    threads=config.cpu_threads, onnx_path=models_dir / trunk_file)
        top = Top(model, start)
        if trunk_runner.device is not None:
            top.to(trunk_runner.device)
            head.to(trunk_runner.device)

        def maps(indices: Sequence[int], desc: str) -> np.ndarray:
            images = [img for img in source.get([usable[i] for i in indices]) if img is not None]
            if not images:
                return np.zeros((0,), dtype=np.float32)
            return run_batched(trunk_runner, images, lambda img: to_tensor(img, spec), desc=desc,
                               progress=config.progress)

        options = FineTuneOptions(
            **{k: v for k, v in {"epochs": config.epochs, "learning_rate": config.learning_rate}.items() if v},
            batch_size=config.batch_size,
            augment=FACE_AUGMENT if face else AugmentOptions(),
        )
        train_images = [img for img in source.get([usable[i] for i in train_idx]) if img is not None]
        tuned = fine_tune(top, head, trunk_runner, train_images, targets[train_idx],
                          maps(val_known, "validation maps"), targets[val_known], spec=spec, multilabel=multilabel,
                          options=options, seed=config.seed, on_epoch=ctx.reporter.epoch, progress=config.progress)
        head = tuned.head.cpu()
        top.cpu()
        model.cpu()
        history = tuned.history
        params |= {"fine_tuned_from_block": start, "epochs_run": tuned.epochs_run, "best_epoch": tuned.best_epoch,
                   "learning_rate": options.learning_rate, "batch_size": options.batch_size,
                   "augment": {"min_area": options.augment.min_area, "flip": options.augment.flip,
                               "jitter": options.augment.jitter}}

        def from_fine_tuned(indices: Sequence[int]) -> np.ndarray:
            if not len(indices):
                return np.zeros((0, len(labels)), dtype=np.float32)
            with torch.inference_mode():
                logits = head(top(torch.from_numpy(maps(indices, "evaluate"))))
            return activate(logits.numpy(), multilabel=multilabel)

        probabilities = from_fine_tuned

    timings["train_s"] = round(time.perf_counter() - started, 3)

    # -- thresholds on validation, metrics on test -----------------------------------------------------
    ctx.reporter.stage("evaluate")
    started = time.perf_counter()
    val_idx = split.validation
    val_probs = probabilities(val_idx)
    test_probs = probabilities(test_with_input)
    test_targets = targets[test_with_input]
    thresholds: dict[str, float]
    if multilabel:
        thresholds = multilabel_thresholds(targets[val_idx], val_probs, labels)
        metrics = multilabel_metrics(test_targets, test_probs, labels, thresholds)
    else:
        key = "unknown" if face else "uncertain"
        val_targets = targets[val_idx]
        val_correct = (val_targets >= 0) & (val_probs.argmax(1) == val_targets) if len(val_idx) else np.zeros(0, bool)
        chosen = choose_confidence_threshold(val_correct, val_probs.max(1) if len(val_idx) else np.zeros(0),
                                             target_precision=config.target_precision)
        thresholds = {key: chosen if chosen is not None else (0.5 if face else 0.0)}
        known_test = test_targets >= 0
        metrics = multiclass_metrics(test_targets[known_test], test_probs[known_test], labels)
        test_correct = known_test & (test_probs.argmax(1) == test_targets)
        metrics["threshold"] = {"name": key, "value": thresholds[key], "target_precision": config.target_precision,
                                "chosen_on": "validation" if chosen is not None else "default (no validation images)",
                                **confidence_report(test_correct, test_probs.max(1), thresholds[key])}
        if face:
            metrics |= _face_metrics(usable, split.test, targets, source, test_with_input, test_probs, thresholds[key])
    metrics["history"] = history
    metrics["train_count"] = len(train_idx)
    metrics["validation_count"] = len(val_idx)
    timings["evaluate_s"] = round(time.perf_counter() - started, 3)
    ctx.report["timings"] = timings

    # -- what the export step needs ------------------------------------------------------------------
    check_idx = (val_idx or test_with_input)[:CHECK_IMAGES]
    check_inputs = _tensors([img for img in source.get([usable[i] for i in check_idx]) if img is not None], spec)
    module = ImageClassifier(PooledFeatures(model), head, multilabel=multilabel).eval()

    def calibration_inputs(count: int = CALIBRATION_IMAGES) -> np.ndarray:
        rng = np.random.default_rng(config.seed)
        chosen_idx = sorted(rng.permutation(train_idx)[:count].tolist())
        return _tensors([img for img in source.get([usable[i] for i in chosen_idx]) if img is not None], spec)

    def int8_agreement(fp32_path: Path, int8_path: Path) -> dict[str, Any]:
        fp32 = run_session(session(fp32_path, config.cpu_threads), check_inputs)[0]
        int8 = run_session(session(int8_path, config.cpu_threads), check_inputs)[0]
        agreement = top1_agreement(fp32, int8)
        result = {"top1_agreement": agreement, "max_abs_diff": float(np.abs(fp32 - int8).max()),
                  "checked": len(check_inputs), "checked_on": "validation" if val_idx else "test",
                  "accepted": agreement >= MIN_TOP1_AGREEMENT, "required_top1_agreement": MIN_TOP1_AGREEMENT}
        if multilabel:
            cut = np.array([thresholds[label] for label in labels])
            result["tag_set_agreement"] = float(((fp32 >= cut) == (int8 >= cut)).all(axis=1).mean())
        return result

    extra = {"mode": config.mode, "head": config.head}
    if face:
        extra |= detector_card(config.face_margin)
        extra["decode"] = "full"  # no JPEG draft mode: the crop is a small part of the image
    params |= {"mode": config.mode, "preprocess": spec.to_json(), "feature_dim": feature_dim}
    return TrainedModel(
        task=task, labels=labels, module=module, preprocess=spec, output_names=["probabilities"],
        thresholds=thresholds, metrics=metrics, params=params, splits=split.ids(usable), extra=extra,
        check_inputs=check_inputs, check_source="validation" if val_idx else "test",
        calibration_inputs=calibration_inputs, int8_agreement=int8_agreement,
    )


def _face_metrics(usable: Sequence[ImageRecord], test: Sequence[int], targets: np.ndarray, source: InputSource,
                  with_face: Sequence[int], probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Open-set numbers: what the `unknown` threshold does to known and unknown people on test."""
    confident = probs.max(1) >= threshold
    right = probs.argmax(1) == targets[with_face]
    known = targets[with_face] >= 0
    known_test = [i for i in test if targets[i] >= 0]
    no_face = [i for i in test if not source.has_input(usable[i])]
    answered_right = int((known & confident & right).sum())
    unknown_faces = int((~known).sum())
    return {
        "test_no_face_count": len(no_face),
        "test_unknown_count": int(sum(1 for i in test if targets[i] < 0)),
        # Known people on test answered with their name (an image without a face counts as a miss).
        "identification_rate": round(answered_right / len(known_test), 6) if known_test else None,
        # Faces of people the model does not know that it answered `unknown`.
        "unknown_rejection_rate": round(float((~known & ~confident).sum()) / unknown_faces, 6)
        if unknown_faces else None,
    }
