"""Training-time augmentation for classifiers, in Pillow and NumPy (seeded, no torchvision).

Each call draws from the generator it is given, so a run with the same seed sees the
same augmented images. The output is the model's input tensor, normalized exactly as
`visiondock.preprocess.to_tensor` normalizes the unaugmented images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from visiondock.preprocess import PreprocessSpec, normalize


@dataclass(frozen=True)
class AugmentOptions:
    # Random resized crop: share of the image's area kept, and the aspect ratio range.
    min_area: float = 0.4
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    # Brightness, contrast and saturation each scaled by a factor in [1 - j, 1 + j].
    jitter: float = 0.25


FACE_AUGMENT = AugmentOptions(min_area=0.7, ratio=(0.85, 1.15), jitter=0.2)


def random_resized_crop(image: Image.Image, rng: np.random.Generator, size: int,
                        options: AugmentOptions) -> Image.Image:
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(options.min_area, 1.0)
        log_ratio = rng.uniform(math.log(options.ratio[0]), math.log(options.ratio[1]))
        aspect = math.exp(log_ratio)
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    # Extreme aspect ratios: the centred square.
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def color_jitter(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    if strength <= 0:
        return image
    enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    for index in rng.permutation(len(enhancers)):
        image = enhancers[int(index)](image).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return image


def augmented_tensor(image: Image.Image, spec: PreprocessSpec, rng: np.random.Generator,
                     options: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """One random view of `image` as a 3xSxS float32 model input."""
    view = random_resized_crop(image, rng, spec.size, options)
    if options.flip and rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    view = color_jitter(view, rng, options.jitter)
    return normalize(np.asarray(view, dtype=np.uint8), spec)
