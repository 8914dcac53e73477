"""Finding the face to identify, in OpenCV, NumPy and Pillow only (no torch).

The trainer (face-identification preset) and the scoring service (task `face`) both
call `find_largest_face` and `crop_face`, so a model sees at scoring time exactly the
crop it was trained on. The detector is OpenCV's frontal-face Haar cascade, whose
weights ship inside opencv-python-headless (`cv2.data.haarcascades`): nothing is
downloaded and it runs the same everywhere. The exported model records the detector
and the margin in `ModelCard.extra` (`face_detector`, `face_margin`, see
`detector_card`).

Decode the image at full resolution (no JPEG draft mode) before finding the face:
the crop is taken from the full image, and a small face needs its pixels.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from visiondock.preprocess import opencv

if TYPE_CHECKING:
    from cv2 import CascadeClassifier

cv2 = opencv()  # with its thread pool off, as for fitting images (see `opencv`)

DETECTOR = "opencv-haar-frontalface-default"
DEFAULT_MARGIN = 0.2
# Detection runs on a copy whose longer side is at most this: Haar cascades cost grows with
# the pixel count, and a face smaller than 24 px at this scale is too small to identify anyway.
DETECT_MAX_SIDE = 640
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE_PIXELS = 24

_local = threading.local()


def _cascade() -> CascadeClassifier:
    # One classifier per thread: the scoring service detects from several worker threads.
    cascade: CascadeClassifier | None = getattr(_local, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load its face detector from {path}")
        _local.cascade = cascade
    return cascade


def find_largest_face(image: Image.Image, *, margin: float = DEFAULT_MARGIN) -> tuple[int, int, int, int] | None:
    """The largest frontal face as x1, y1, x2, y2 pixels of `image`, or None when there is none.

    The detector's box is widened by `margin` of its width and height on every side
    (hair, chin and ears help tell people apart) and clipped to the image.
    """
    width, height = image.size
    scale = min(1.0, DETECT_MAX_SIDE / max(width, height))
    gray = image.convert("L")
    if scale < 1.0:
        gray = gray.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                           Image.Resampling.BILINEAR)
    pixels = cv2.equalizeHist(np.asarray(gray, dtype=np.uint8))
    found = _cascade().detectMultiScale(pixels, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS,
                                        minSize=(MIN_FACE_PIXELS, MIN_FACE_PIXELS))
    if len(found) == 0:
        return None
    # Largest area first; ties by position so the answer never depends on OpenCV's order.
    boxes = [[int(v) for v in box] for box in found]  # an array of rows, which OpenCV's stubs call a sequence
    x, y, w, h = (float(v) / scale for v in max(boxes, key=lambda b: (b[2] * b[3], -b[1], -b[0])))
    x1 = max(0, round(x - margin * w))
    y1 = max(0, round(y - margin * h))
    x2 = min(width, round(x + w + margin * w))
    y2 = min(height, round(y + h + margin * h))
    return x1, y1, x2, y2


def crop_face(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The face region of `image` (a box from `find_largest_face`), as a new RGB image."""
    return image.crop(box).convert("RGB")


def detector_card(margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """What a face model records about how its crops were made (stored in `ModelCard.extra`)."""
    return {"face_detector": DETECTOR, "face_margin": margin, "face_detect_max_side": DETECT_MAX_SIDE,
            "opencv_version": cv2.__version__}
