"""Box-aware augmentation keeps every box on the pixels of its object."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from services.trainer.detector import AugmentOptions, DetectionSample
from services.trainer.detector.augment import clip_boxes, flip_boxes, map_boxes, plain_view, random_view
from visiondock.preprocess import PreprocessSpec


def test_box_helpers_by_hand() -> None:
    boxes = np.array([[10, 20, 30, 60]], np.float32)
    np.testing.assert_allclose(map_boxes(boxes, (0, 0, 100, 200), (0, 0, 50, 50)), [[5, 5, 15, 15]])
    np.testing.assert_allclose(map_boxes(boxes, (10, 20, 110, 220), (4, 4, 54, 104)), [[4, 4, 14, 24]])
    np.testing.assert_allclose(flip_boxes(boxes, 100), [[70, 20, 90, 60]])
    clipped, visible = clip_boxes(boxes, (0, 0, 20, 100))
    np.testing.assert_allclose(clipped, [[10, 20, 20, 60]])
    np.testing.assert_allclose(visible, [0.5])


def _one_red_box(box: tuple[int, int, int, int]) -> DetectionSample:
    image = Image.new("RGB", (300, 400), (40, 90, 40))
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 0, 0))
    return DetectionSample(image, np.array([box], np.float32), np.array([0]))


def _red_extent(pixels: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 pixel edges of the pixels that are mostly red."""
    red = (pixels[..., 0].astype(int) - pixels[..., 1]) > 100
    ys, xs = np.nonzero(red)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_random_views_move_boxes_with_the_pixels(seed: int) -> None:
    sample = _one_red_box((120, 150, 200, 260))
    options = AugmentOptions(min_scale=0.7, max_scale=1.3, colour=0.0, min_visible=0.99)
    view = random_view(sample, 96, np.random.default_rng(seed), options)
    assert view.pixels.shape == (96, 96, 3)
    if len(view.boxes):
        assert view.labels.tolist() == [0]
        # Bilinear resampling blurs edges by at most a pixel.
        np.testing.assert_allclose(view.boxes[0], _red_extent(view.pixels), atol=1.0)
    else:  # cut by the window: an ignore region over what is left of it
        assert len(view.ignore) == 1


def test_flip_and_crop_are_both_exercised() -> None:
    sample = _one_red_box((120, 150, 200, 260))
    options = AugmentOptions(min_scale=0.7, max_scale=1.3, colour=0.0)
    centres = []
    for seed in range(12):
        view = random_view(sample, 96, np.random.default_rng(seed), options)
        if len(view.boxes):
            centres.append((view.boxes[0, 0] + view.boxes[0, 2]) / 2)
    # Unflipped, the box centre sits left of the middle (160 of 300 → 51 of 96); flipped, right of it.
    assert min(centres) < 48 < max(centres)


def test_mostly_cut_boxes_become_ignore_regions() -> None:
    sample = _one_red_box((0, 0, 60, 60))
    options = AugmentOptions(min_scale=0.5, max_scale=0.5, aspect_jitter=1.0, flip_probability=0.0, colour=0.0)
    outcomes = set()
    for seed in range(30):
        view = random_view(sample, 64, np.random.default_rng(seed), options)
        outcomes.add((len(view.boxes), len(view.ignore)))
        assert len(view.boxes) + len(view.ignore) <= 1
    assert (0, 1) in outcomes  # some windows cut most of the box away


def test_plain_view_is_the_scoring_input() -> None:
    sample = _one_red_box((120, 150, 200, 260))
    view = plain_view(sample, PreprocessSpec(size=96, resize=96, policy="stretch"))
    np.testing.assert_allclose(view.boxes[0], [38.4, 36.0, 64.0, 62.4], atol=1e-4)
    np.testing.assert_allclose(view.boxes[0], _red_extent(view.pixels), atol=1.0)
