"""Generated photos of shapes: a labeled data set that needs no download.

Each image shows one filled shape (the class) of random colour, size, position and
rotation on a cluttered, noisy gradient background with distractor strokes. A model
must learn the outline to tell the classes apart: colour, size and place say nothing,
so an untrained model is at chance. The demo and the end-to-end tests use it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "triangle", "square", "pentagon", "hexagon", "star")
_SIDES = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}


@dataclass(frozen=True)
class ShapeSample:
    label: str
    jpeg: bytes


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape in _SIDES:
        sides = _SIDES[shape]
        corners = [angle + k * 2 * math.pi / sides for k in range(sides)]
        return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners]
    if shape == "star":
        points = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.45
            a = angle + k * math.pi / 5
            points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        return points
    raise ValueError(f"unknown shape {shape!r}")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(c) for c in rng.integers(0, 256, size=3))
    return red, green, blue


def _far_colour(rng: np.random.Generator, avoid: tuple[int, int, int]) -> tuple[int, int, int]:
    # Enough contrast that a person could see the shape; otherwise any colour.
    while True:
        colour = _colour(rng)
        if sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) > 150:
            return colour


def render(shape: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    top, bottom = _colour(rng), _colour(rng)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    background = (1 - ramp) * np.array(top, np.float32) + ramp * np.array(bottom, np.float32)
    background = np.broadcast_to(background, (size, size, 3)) + rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):  # distractor strokes
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, 4))
        draw.line((x0, y0, x1, y1), fill=_colour(rng), width=int(rng.integers(1, 4)))
    red, green, blue = (int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    fill = _far_colour(rng, (red, green, blue))
    radius = float(rng.uniform(0.2, 0.38)) * size
    cx, cy = (float(v) for v in rng.uniform(radius * 0.8, size - radius * 0.8, 2))
    angle = float(rng.uniform(0, 2 * math.pi))
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, radius, angle), fill=fill)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.2))))


def samples(per_class: int, *, seed: int, size: int = 160) -> Iterator[ShapeSample]:
    rng = np.random.default_rng(seed)
    for _ in range(per_class):
        for shape in SHAPES:
            buffer = io.BytesIO()
            render(shape, rng, size).save(buffer, "JPEG", quality=int(rng.integers(80, 96)))
            yield ShapeSample(label=shape, jpeg=buffer.getvalue())


def write_folder(root: Path, per_class: int, *, seed: int, size: int = 160) -> Path:
    """A folder-per-class data set: `root/<shape>/<n>.jpg`."""
    counters = dict.fromkeys(SHAPES, 0)
    for sample in samples(per_class, seed=seed, size=size):
        folder = root / sample.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{counters[sample.label]:04d}.jpg").write_bytes(sample.jpeg)
        counters[sample.label] += 1
    return root
