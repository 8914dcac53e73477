"""One annotated image for detection: the unit the detector trains and evaluates on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data import TrainingDataError


@dataclass(frozen=True)
class DetectionSample:
    """An RGB image and its boxes, x1, y1, x2, y2 in pixels of that image.

    `labels[k]` is the index (into the label names given to `fit_detector`) of
    `boxes[k]`. An image with no boxes is a negative: it teaches the background.
    """

    image: Image.Image
    boxes: np.ndarray  # float32 [K, 4]
    labels: np.ndarray  # int64 [K]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = np.zeros((0, 4), dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise TrainingDataError(f"boxes must be a [K, 4] array of x1, y1, x2, y2; got shape {boxes.shape}")
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(boxes) != len(labels):
            raise TrainingDataError(f"an image has {len(boxes)} boxes but {len(labels)} labels")
        if not np.isfinite(boxes).all():
            raise TrainingDataError("a box has a coordinate that is not a finite number")
        if len(boxes) and ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            bad = boxes[(boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])][0].tolist()
            raise TrainingDataError(f"box {bad} is empty: x2 must exceed x1 and y2 must exceed y1")
        if self.image.mode != "RGB":
            raise TrainingDataError(f"detection images must be RGB, got mode {self.image.mode!r}")
        # Frozen dataclass: normalized arrays are stored through object.__setattr__.
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def check_samples(samples: list[DetectionSample], label_count: int, role: str) -> None:
    """Raise TrainingDataError when a label index is outside the label names."""
    for i, sample in enumerate(samples):
        if len(sample.labels) and (sample.labels.min() < 0 or sample.labels.max() >= label_count):
            raise TrainingDataError(f"{role} image {i} has label index {int(sample.labels.max())} but only "
                                    f"{label_count} label names were given")
