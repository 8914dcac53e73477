"""Labeled images from the annotation service, and the train/test split.

The trainer reads a project the way any client would, through the annotation API,
so a training Job needs only the service URLs and a key.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from visiondock.clients import AnnotationClient
from visiondock.errors import ApiError
from visiondock.images import decode_rgb

log = logging.getLogger(__name__)
DOWNLOAD_THREADS = 8


class TrainingDataError(Exception):
    """The project's data cannot train a model; the message says what to fix."""


@dataclass
class LabeledImage:
    id: str
    filename: str
    tags: list[str]
    regions: list[dict[str, Any]]
    split: str | None
    image: Image.Image | None = None


@dataclass
class Dataset:
    project: dict[str, Any]
    labels: list[str]
    images: list[LabeledImage]
    # Images that could not be read, with the reason: reported, never silently dropped.
    skipped: list[dict[str, str]] = field(default_factory=list)


def fetch_dataset(client: AnnotationClient, project_id: str, *, progress: bool = True) -> Dataset:
    project = client.get_project(project_id)
    tags = [tag["name"] for tag in client.list_tags(project_id)]
    records = [
        LabeledImage(id=doc["id"], filename=doc["filename"], tags=doc["tags"], regions=doc["regions"],
                     split=doc["split"])
        for doc in client.list_images(project_id, labeled=True)
    ]
    if not records:
        raise TrainingDataError(f"project {project_id!r} has no labeled images; label some and train again")

    skipped: list[dict[str, str]] = []

    def load(record: LabeledImage) -> LabeledImage:
        try:
            record.image = decode_rgb(client.get_image_bytes(project_id, record.id))
        except ApiError as exc:  # a stored image that no longer decodes
            skipped.append({"id": record.id, "filename": record.filename, "reason": exc.message})
        return record

    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        loaded = list(tqdm(pool.map(load, records), total=len(records), desc="download images", unit="img",
                           disable=not progress))
    usable = [r for r in loaded if r.image is not None]
    for item in skipped:
        log.warning("skipping image %s (%s): %s", item["id"], item["filename"], item["reason"])
    return Dataset(project=project, labels=tags, images=usable, skipped=skipped)


@dataclass
class Split:
    train: list[int]
    test: list[int]


def class_targets(dataset: Dataset) -> tuple[list[str], np.ndarray]:
    """Label names actually used (sorted) and each image's class index (multiclass)."""
    counts = Counter(image.tags[0] for image in dataset.images)
    too_few = sorted(name for name, count in counts.items() if count < 2)
    if too_few:
        raise TrainingDataError(
            "every class needs at least two labeled images (one to train on, one to test); "
            + ", ".join(f"{name!r} has {counts[name]}" for name in too_few)
        )
    if len(counts) < 2:
        raise TrainingDataError(f"a classifier needs at least two classes; the labeled images only show "
                                f"{', '.join(counts) or 'none'}")
    labels = sorted(counts)
    index = {name: i for i, name in enumerate(labels)}
    return labels, np.array([index[image.tags[0]] for image in dataset.images], dtype=np.int64)


def stratified_split(targets: np.ndarray, explicit: Sequence[str | None], *, test_fraction: float,
                     seed: int) -> Split:
    """Keep the project's explicit train/test assignments; split the rest per class, seeded.

    Each class with unassigned images gives `test_fraction` of them (at least one, and
    always leaving at least one to train on) to the test split.
    """
    rng = np.random.default_rng(seed)
    train = [i for i, s in enumerate(explicit) if s == "train"]
    test = [i for i, s in enumerate(explicit) if s == "test"]
    for cls in np.unique(targets):
        free = [i for i in np.flatnonzero(targets == cls) if explicit[i] is None]
        if not free:
            continue
        rng.shuffle(free)
        has_test = any(targets[i] == cls for i in test)
        has_train = any(targets[i] == cls for i in train)
        n_test = round(len(free) * test_fraction)
        if not has_test:
            n_test = max(n_test, 1)
        if not has_train:
            n_test = min(n_test, len(free) - 1)
        test.extend(int(i) for i in free[:n_test])
        train.extend(int(i) for i in free[n_test:])
    return Split(train=sorted(train), test=sorted(test))
