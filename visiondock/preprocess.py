"""Image → input tensor, in NumPy and Pillow only.

The trainer and the scoring service both call `to_tensor`, so a model sees at
scoring time exactly the pixels it saw in training. The spec travels inside the
exported ONNX file (`PreprocessSpec.to_json`), so the scoring service needs nothing
but the file.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np
from PIL import Image

# How the image is fitted to the square input:
# - "shorter_center_crop": resize the shorter side to `resize`, cut the centre `size` square
#   (the ImageNet evaluation recipe; classification);
# - "stretch": resize to `size` x `size` ignoring aspect (keeps the whole frame; detection).
RESIZE_POLICIES = ("shorter_center_crop", "stretch")


@dataclass(frozen=True)
class PreprocessSpec:
    size: int = 224
    resize: int = 256
    policy: str = "shorter_center_crop"
    # (x / 255 - mean) / std per channel, RGB order: what the EfficientNet-Lite weights expect.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.policy not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {self.policy!r}; use one of {RESIZE_POLICIES}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        raw = json.loads(text)
        return cls(size=int(raw["size"]), resize=int(raw["resize"]), policy=raw["policy"],
                   mean=tuple(raw["mean"]), std=tuple(raw["std"]))

    @property
    def draft_size(self) -> tuple[int, int]:
        """The smallest decode size that loses nothing: what JPEG draft mode may shrink to."""
        side = self.resize if self.policy == "shorter_center_crop" else self.size
        return side, side


@functools.cache
def opencv() -> ModuleType:
    """OpenCV with its own thread pool off (the scoring and trainer installs carry it; the API services
    never fit images).

    Images are fitted one per thread (the scoring service's decode threads, the trainer's loader
    workers), so a pool of one thread per core can only split a small warp and wait for it: on a
    many-core GPU node, decoding and fitting a photo cost many times the CPU it costs on one core
    (docs/benchmarks.md). The setting is the process's: face detection runs on
    one thread too.
    """
    import cv2

    cv2.setNumThreads(1)
    return cv2


def fit(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image resized and cropped to the model's square input: size x size x 3 uint8 pixels.

    Only the kept square is resampled (Pillow's `box`), so the work and memory are
    `size` x `size` whatever the image's shape: the same pixels as resizing the whole
    image and cropping, without ever holding the resized whole. An image that is
    enlarged (a small photo, or a JPEG that draft mode decoded near the input size) is
    sampled by OpenCV instead: the same bilinear weights (within one level on a
    fraction of the pixels), faster (docs/benchmarks.md), which the scoring service spends per request.
    """
    width, height = image.size
    if spec.policy == "stretch":
        box = (0.0, 0.0, float(width), float(height))
    else:
        scale = spec.resize / min(width, height)
        resized_width, resized_height = max(spec.size, round(width * scale)), max(spec.size, round(height * scale))
        left = (resized_width - spec.size) // 2
        top = (resized_height - spec.size) // 2
        # The crop square of the resized image, in the original image's coordinates.
        x_scale, y_scale = width / resized_width, height / resized_height
        box = (left * x_scale, top * y_scale, (left + spec.size) * x_scale, (top + spec.size) * y_scale)
    x_step, y_step = (box[2] - box[0]) / spec.size, (box[3] - box[1]) / spec.size
    if x_step <= 1.0 and y_step <= 1.0 and image.mode == "RGB":
        return _enlarge(np.asarray(image), box, x_step, y_step, spec.size)
    # Shrinking: Pillow's bilinear filter widens with the scale (anti-aliasing); OpenCV's does not.
    return np.asarray(image.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box))


def _enlarge(pixels: np.ndarray, box: tuple[float, float, float, float], x_step: float, y_step: float,
             size: int) -> np.ndarray:
    """Bilinear sampling of `box` onto a size x size grid, pixel centres aligned as Pillow aligns them."""
    cv2 = opencv()
    # Output pixel centre i + 0.5 samples the source at box[0] + (i + 0.5) * step, whose pixel
    # centres sit at j + 0.5.
    matrix = np.array([[x_step, 0.0, box[0] + 0.5 * x_step - 0.5],
                       [0.0, y_step, box[1] + 0.5 * y_step - 0.5]])
    enlarged: np.ndarray = cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                          borderMode=cv2.BORDER_REPLICATE)
    return enlarged


def normalization(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 (scale, shift): a normalized value is pixel * scale - shift."""
    std = np.asarray(spec.std, dtype=np.float32)
    return 1.0 / (255.0 * std), np.asarray(spec.mean, dtype=np.float32) / std


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """HxWx3 uint8 → 3xHxW float32, normalized."""
    scale, shift = (values[:, None, None] for values in normalization(spec))
    # Two passes straight into the channel-first result: a scoring hot path (several times faster than
    # converting, scaling, shifting and transposing in separate arrays: docs/benchmarks.md).
    height, width, _ = pixels.shape
    out = np.empty((3, height, width), dtype=np.float32)
    np.multiply(pixels.transpose(2, 0, 1), scale, out=out)
    out -= shift
    return out


def to_tensor(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image → the model's 3xHxW float32 input."""
    return normalize(fit(image, spec), spec)
