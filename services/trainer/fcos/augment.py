"""Box-aware augmentation: random zoom/crop, horizontal flip and colour jitter.

Every view is the square model input (the whole window stretched to size x size,
like the "stretch" preprocessing the scoring service uses) with its boxes mapped
into that square's pixels. Boxes cut by the window keep their visible part when
enough of them shows; boxes mostly outside become ignore regions, so the detector
is neither taught that a half-visible product is background nor asked to find a
sliver of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from visiondock.preprocess import PreprocessSpec, fit

from .samples import DetectionSample

# What fills the parts of a zoomed-out view outside the photo: mid grey, which the
# backbone's normalization maps to zero.
FILL = (128, 128, 128)


@dataclass(frozen=True)
class AugmentOptions:
    # The window's side as a fraction of the image's side: < 1 zooms in (crops),
    # > 1 zooms out (the photo shrinks inside a grey frame).
    min_scale: float = 0.6
    max_scale: float = 1.15
    # The window's aspect ratio varies by up to this factor either way.
    aspect_jitter: float = 1.15
    flip_probability: float = 0.5
    # Brightness, contrast and saturation each scale by a factor in [1 - colour, 1 + colour].
    colour: float = 0.3
    # A cut box is kept (clipped) when at least this share of its area is in view.
    min_visible: float = 0.6


@dataclass
class View:
    """A training input: size x size x 3 uint8 pixels, boxes in its pixels, labels, ignore regions."""

    pixels: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray


def map_boxes(boxes: np.ndarray, source: tuple[float, float, float, float],
              target: tuple[float, float, float, float]) -> np.ndarray:
    """Map boxes from the `source` rectangle (x1, y1, x2, y2) onto the `target` rectangle."""
    sx = (target[2] - target[0]) / (source[2] - source[0])
    sy = (target[3] - target[1]) / (source[3] - source[1])
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - source[0]) * sx + target[0]
    out[:, [1, 3]] = (boxes[:, [1, 3]] - source[1]) * sy + target[1]
    return out


def clip_boxes(boxes: np.ndarray, rect: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to `rect`, and the share of each box's area left inside it."""
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], rect[0], rect[2])
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], rect[1], rect[3])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return clipped, inside / np.maximum(area, 1e-9)


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes of an image mirrored left to right."""
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def jitter_colour(pixels: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random brightness, contrast and saturation on HxWx3 uint8 pixels."""
    if strength <= 0:
        return pixels
    x = pixels.astype(np.float32)
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, 3)
    x *= brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey[..., None]) * saturation + grey[..., None]
    jittered: np.ndarray = np.clip(x, 0, 255).astype(np.uint8)
    return jittered


def plain_view(sample: DetectionSample, spec: PreprocessSpec) -> View:
    """The unaugmented input, exactly what the scoring service feeds the model."""
    size = spec.size
    boxes = map_boxes(sample.boxes, (0, 0, sample.width, sample.height), (0, 0, size, size))
    return View(np.asarray(fit(sample.image, spec), dtype=np.uint8), boxes, sample.labels.copy(),
                np.zeros((0, 4), dtype=np.float32))


def random_view(sample: DetectionSample, size: int, rng: np.random.Generator, options: AugmentOptions) -> View:
    """One random zoom/crop, flip and colour jitter of a sample, as a size x size input."""
    width, height = sample.width, sample.height
    scale = rng.uniform(options.min_scale, options.max_scale)
    aspect = math.exp(rng.uniform(-math.log(options.aspect_jitter), math.log(options.aspect_jitter)))
    win_w = max(8, round(width * scale * math.sqrt(aspect)))
    win_h = max(8, round(height * scale / math.sqrt(aspect)))
    # The window slides anywhere it stays within the image (zoom in) or contains it (zoom out).
    x0 = int(rng.integers(min(0, width - win_w), max(0, width - win_w) + 1))
    y0 = int(rng.integers(min(0, height - win_h), max(0, height - win_h) + 1))
    # The part of the photo inside the window, and where it lands in the output square.
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + win_w, width), min(y0 + win_h, height)
    px0, py0 = round((ix0 - x0) * size / win_w), round((iy0 - y0) * size / win_h)
    px1, py1 = round((ix1 - x0) * size / win_w), round((iy1 - y0) * size / win_h)
    part = sample.image.crop((ix0, iy0, ix1, iy1)).resize((px1 - px0, py1 - py0), Image.Resampling.BILINEAR)
    if (px0, py0, px1, py1) == (0, 0, size, size):
        canvas = part
    else:
        canvas = Image.new("RGB", (size, size), FILL)
        canvas.paste(part, (px0, py0))

    boxes = map_boxes(sample.boxes, (ix0, iy0, ix1, iy1), (px0, py0, px1, py1))
    boxes, visible = clip_boxes(boxes, (px0, py0, px1, py1))
    big_enough = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
    keep = (visible >= options.min_visible) & big_enough
    ignore = boxes[~keep & (visible > 0)]
    boxes, labels = boxes[keep], sample.labels[keep]

    pixels = np.asarray(canvas, dtype=np.uint8)
    if rng.random() < options.flip_probability:
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        boxes, ignore = flip_boxes(boxes, size), flip_boxes(ignore, size)
    pixels = jitter_colour(pixels, rng, options.colour)
    return View(pixels, boxes.astype(np.float32), labels.astype(np.int64), ignore.astype(np.float32))
