"""One training run: read the project, train, evaluate on held-out images, export, register.

`run_training` is what `python -m services.trainer` (the Kubernetes Job) and
`visiondock train` both call. It registers nothing unless every step succeeded.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.modelcard import ModelCard
from visiondock.preprocess import to_tensor

from .backbone import DEFAULT_BACKBONE, PooledFeatures, default_preprocess, load_pretrained
from .classification import ImageClassifier, extract_features, train_linear_head
from .data import TrainingDataError, class_targets, fetch_dataset, stratified_split
from .export import check_parity, export_onnx
from .metrics import classification_metrics

log = logging.getLogger(__name__)
SUPPORTED_TASKS = ("multiclass",)


@dataclass
class TrainingConfig:
    project: str
    model: str | None = None  # defaults to the project id
    backbone: str = DEFAULT_BACKBONE
    test_fraction: float = 0.2
    seed: int = 0
    weight_decay: float = 1e-3
    batch_size: int = 32
    threads: int | None = None  # torch intra-op threads; None = all cores
    progress: bool = True

    @property
    def model_name(self) -> str:
        return self.model or self.project


@dataclass
class TrainingResult:
    model: str
    version: int
    metrics: dict[str, Any]
    skipped: list[dict[str, str]]
    seconds: float


def run_training(config: TrainingConfig, annotation: AnnotationClient, registry: RegistryClient) -> TrainingResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)

    dataset = fetch_dataset(annotation, config.project, progress=config.progress)
    task = dataset.project["type"]
    if task not in SUPPORTED_TASKS:
        raise TrainingDataError(f"project {config.project!r} is a {task} project; this trainer trains "
                                f"{', '.join(SUPPORTED_TASKS)} projects")
    labels, targets = class_targets(dataset)
    split = stratified_split(targets, [img.split for img in dataset.images], test_fraction=config.test_fraction,
                             seed=config.seed)
    if not split.test:
        raise TrainingDataError("no images left for the held-out test split; label more images")
    log.info("training %s on %d images, testing on %d (%d classes)", config.model_name, len(split.train),
             len(split.test), len(labels))

    spec = default_preprocess(config.backbone)
    extractor = PooledFeatures(load_pretrained(config.backbone)).eval()
    features = extract_features(extractor, [img.image for img in dataset.images], spec,
                                batch_size=config.batch_size, progress=config.progress)
    head = train_linear_head(features[split.train], targets[split.train], len(labels),
                             weight_decay=config.weight_decay, seed=config.seed)
    with torch.inference_mode():
        test_probabilities = torch.softmax(head(torch.from_numpy(features[split.test])), dim=1).numpy()
    metrics = classification_metrics(targets[split.test], test_probabilities, labels)
    metrics["train_count"] = len(split.train)
    log.info("held-out accuracy %.4f on %d images", metrics["accuracy"], len(split.test))

    card = ModelCard(task="multiclass", labels=labels, preprocess=spec, backbone=config.backbone,
                     model_name=config.model_name)
    classifier = ImageClassifier(extractor, head).eval()
    with tempfile.TemporaryDirectory(prefix="visiondock-train-") as workdir:
        onnx_path = export_onnx(classifier, card, Path(workdir) / "model.onnx")
        sample = np.stack([to_tensor(dataset.images[i].image, spec) for i in split.test[:16]])
        metrics["export_parity"] = check_parity(classifier, onnx_path, sample)
        ids = [img.id for img in dataset.images]
        metadata = {
            "task": "multiclass",
            "labels": labels,
            "project_id": config.project,
            "metrics": metrics,
            "splits": {"train": [ids[i] for i in split.train], "validation": [], "test": [ids[i] for i in split.test]},
            "params": {k: v for k, v in asdict(config).items() if k not in ("progress",)}
            | {"mode": "quick", "head": "linear", "preprocess": spec.to_json()},
        }
        registered = registry.register_version(config.model_name, onnx_path, metadata)
    seconds = time.perf_counter() - started
    log.info("registered %s version %s in %.1f s", config.model_name, registered["version"], seconds)
    return TrainingResult(model=config.model_name, version=int(registered["version"]), metrics=metrics,
                          skipped=dataset.skipped, seconds=seconds)
