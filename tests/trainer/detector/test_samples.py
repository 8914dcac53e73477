"""Bad annotations fail with a message a person can act on, before any training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.trainer.data import TrainingDataError
from services.trainer.detector import DetectionSample, DetectorOptions, fit_detector

IMAGE = Image.new("RGB", (64, 48))


def test_samples_normalize_types_and_accept_negatives() -> None:
    sample = DetectionSample(IMAGE, [[1, 2, 30, 40]], [1])
    assert sample.boxes.dtype == np.float32 and sample.boxes.shape == (1, 4)
    assert sample.labels.dtype == np.int64
    negative = DetectionSample(IMAGE, np.zeros((0, 4)), np.zeros(0))
    assert negative.boxes.shape == (0, 4) and negative.labels.shape == (0,)


@pytest.mark.parametrize(("boxes", "labels", "message"), [
    ([[10, 10, 5, 20]], [0], "empty"),
    ([[10, 10, 20, 20]], [0, 1], "2 labels"),
    ([[10, float("nan"), 20, 20]], [0], "finite"),
    ([[10, 10], [20, 20]], [0, 1], "shape"),
])
def test_bad_boxes_are_refused(boxes: list[list[float]], labels: list[int], message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        DetectionSample(IMAGE, np.array(boxes, np.float32), np.array(labels))


def test_fit_refuses_unknown_labels_and_box_free_training_sets() -> None:
    options = DetectorOptions(input_size=64, epochs=1)
    labelled = DetectionSample(IMAGE, [[1, 2, 30, 40]], [3])
    with pytest.raises(TrainingDataError, match="label index 3"):
        fit_detector([labelled], [], ["a", "b"], options, progress=False)
    negative = DetectionSample(IMAGE, np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(TrainingDataError, match="no training image has a box"):
        fit_detector([negative], [], ["a"], options, progress=False)
    with pytest.raises(ValueError, match="multiple of 32"):
        DetectorOptions(input_size=100)
