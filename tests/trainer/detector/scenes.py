"""Generated detection scenes: coloured shapes at known boxes on noisy backgrounds.

Two classes that differ only by outline (discs and squares of random colour and
size), placed without overlap on a noisy colour gradient with distractor strokes,
in a frame that is not square so the stretch to the model input is exercised.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from services.trainer.detector import DetectionSample

LABELS = ["disc", "square"]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]


def scene(rng: np.random.Generator, *, width: int = 200, height: int = 150, max_objects: int = 3) -> DetectionSample:
    top, bottom = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    pixels = (1 - ramp) * top + ramp * bottom + rng.normal(0, 10, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        draw.line((x0, y0, x1, y1), fill=_colour(rng), width=2)
    background = pixels.reshape(-1, 3).mean(0)
    boxes: list[list[float]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1)) if max_objects else 0):
        for _attempt in range(20):
            side = float(rng.uniform(30, 55))
            x0, y0 = float(rng.uniform(0, width - side)), float(rng.uniform(0, height - side))
            box = [x0, y0, x0 + side, y0 + side]
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes):
                break
        else:
            continue
        while True:  # a colour that stands out from the background
            fill = _colour(rng)
            if np.abs(np.array(fill) - background).sum() > 180:
                break
        label = int(rng.integers(0, 2))
        # PIL fills x0..x1 inclusive: the drawn shape spans [x0, x1 + 1) in pixel edges.
        corners = (round(box[0]), round(box[1]), round(box[2]) - 1, round(box[3]) - 1)
        (draw.ellipse if label == 0 else draw.rectangle)(corners, fill=fill)
        boxes.append([float(c) for c in (round(box[0]), round(box[1]), round(box[2]), round(box[3]))])
        labels.append(label)
    return DetectionSample(image, np.array(boxes, np.float32), np.array(labels, np.int64))


def scenes(count: int, *, seed: int) -> list[DetectionSample]:
    rng = np.random.default_rng(seed)
    return [scene(rng) for _ in range(count)]


def negatives(count: int, *, seed: int) -> list[DetectionSample]:
    """Backgrounds with no objects."""
    rng = np.random.default_rng(seed)
    return [DetectionSample(scene(rng, max_objects=0).image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
            for _ in range(count)]
