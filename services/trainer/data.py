"""Labeled images from the annotation service, and the targets their labels give.

The trainer reads a project the way any client would, through the annotation API,
so a training Job needs only the service URLs and a key. The listing (tags, boxes,
splits) comes first; pixels are downloaded only for the images a step needs, so a
quick retraining whose features are all cached downloads almost nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from visiondock.clients import AnnotationClient, ServiceError
from visiondock.images import InvalidImageError, decode_rgb

log = logging.getLogger(__name__)
DOWNLOAD_THREADS = 8


class TrainingDataError(Exception):
    """The project's data cannot train a model; the message says what to fix."""


@dataclass
class ImageRecord:
    id: str  # the SHA-256 of the image's bytes
    filename: str
    tags: list[str]
    regions: list[dict[str, Any]]
    split: str | None
    label_revision: int = 0  # counts its label changes; recorded in the version's lineage


@dataclass
class ProjectData:
    project: dict[str, Any]
    tags: list[str]
    records: list[ImageRecord]


def fetch_listing(client: AnnotationClient, project_id: str) -> ProjectData:
    project = client.get_project(project_id)
    tags = [tag["name"] for tag in client.list_tags(project_id)]
    records = [ImageRecord(id=doc["id"], filename=doc["filename"], tags=list(doc["tags"]),
                           regions=list(doc["regions"]), split=doc["split"],
                           label_revision=int(doc.get("label_revision") or 0))
               for doc in client.list_images(project_id, labeled=True)]
    if not records:
        raise TrainingDataError(f"project {project_id!r} has no labeled images; label some and train again")
    return ProjectData(project=project, tags=tags, records=records)


class ImageLoader:
    """Downloads and decodes images in threads; images that no longer decode are listed in `skipped`."""

    def __init__(self, client: AnnotationClient, project_id: str, *, progress: bool = True) -> None:
        self.client = client
        self.project_id = project_id
        self.progress = progress
        # Images that could not be read, with the reason: reported, never silently dropped.
        self.skipped: list[dict[str, str]] = []
        self.downloaded = 0

    def load(self, records: Sequence[ImageRecord], *, draft_size: tuple[int, int] | None,
             desc: str = "download images") -> dict[str, Image.Image]:
        known_bad = {item["id"] for item in self.skipped}
        wanted = [r for r in records if r.id not in known_bad]

        def one(record: ImageRecord) -> tuple[ImageRecord, Image.Image | None, str | None]:
            try:
                data = self.client.get_image_bytes(self.project_id, record.id)
                return record, decode_rgb(data, draft_size=draft_size), None
            except InvalidImageError as exc:  # a stored image that no longer decodes
                return record, None, str(exc)
            except ServiceError as exc:
                if not exc.is_not_found:  # the service failing fails the run; a deleted image is skipped
                    raise
                return record, None, f"deleted while the run was reading the project ({exc})"

        loaded: dict[str, Image.Image] = {}
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            for record, image, problem in tqdm(pool.map(one, wanted), total=len(wanted), desc=desc, unit="img",
                                               disable=not self.progress or not wanted):
                if image is None:
                    log.warning("skipping image %s (%s): %s", record.id, record.filename, problem)
                    self.skipped.append({"id": record.id, "filename": record.filename, "reason": str(problem)})
                else:
                    loaded[record.id] = image
        self.downloaded += len(loaded)
        return loaded


# -- targets ----------------------------------------------------------------------------
def _require_two_each(counts: Counter[str], what: str) -> None:
    too_few = sorted(name for name, count in counts.items() if count < 2)
    if too_few:
        raise TrainingDataError(
            f"every {what} needs at least two labeled images (one to train on, one to test); "
            + ", ".join(f"{name!r} has {counts[name]}" for name in too_few)
        )


def class_targets(records: Sequence[ImageRecord], *, unknown_tag: str | None = None) -> tuple[list[str], np.ndarray]:
    """Class names actually used (sorted) and each image's class index (multiclass).

    With `unknown_tag` (face preset), images carrying it get index -1: not a class.
    """
    untagged = [r.filename for r in records if not r.tags]
    if untagged:
        raise TrainingDataError(f"{len(untagged)} labeled image(s) of a multiclass project have no tag, "
                                f"e.g. {untagged[0]!r}")
    counts = Counter(r.tags[0] for r in records if r.tags[0] != unknown_tag)
    _require_two_each(counts, "class")
    if len(counts) < 2:
        raise TrainingDataError(f"a classifier needs at least two classes; the labeled images only show "
                                f"{', '.join(counts) or 'none'}")
    labels = sorted(counts)
    index = {name: i for i, name in enumerate(labels)}
    return labels, np.array([index.get(r.tags[0], -1) for r in records], dtype=np.int64)


def multilabel_targets(records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
    """Tag names used (sorted) and a [N, T] 0/1 matrix; an image with no tag is a negative for all."""
    counts = Counter(tag for r in records for tag in set(r.tags))
    if not counts:
        raise TrainingDataError("no labeled image carries a tag; tag some images and train again")
    _require_two_each(counts, "tag")
    labels = sorted(counts)
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(records), len(labels)), dtype=np.float32)
    for row, record in enumerate(records):
        for tag in record.tags:
            matrix[row, index[tag]] = 1.0
    return labels, matrix


def region_labels(records: Sequence[ImageRecord]) -> list[str]:
    """Tags used by boxes (sorted); every one must appear on at least two images."""
    counts = Counter(tag for r in records for tag in {region["tag"] for region in r.regions})
    if not counts:
        raise TrainingDataError("no labeled image has a box; draw boxes on some images and train again")
    _require_two_each(counts, "tag")
    return sorted(counts)
