"""An answer drawn on its image: boxes with labels and scores, or the label in a banner.

The drawing itself (colours, line widths, label strips) is `visiondock.drawing`, the one
style the labeling app also follows.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from visiondock.drawing import NEUTRAL_COLOUR, DrawnBox, colour_for, draw_banner, draw_boxes, scale_box

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


def draw_answer(image: Image.Image, answer: dict[str, Any], labels: list[str]) -> Image.Image:
    """A copy of `image` (upright) with the answer drawn on it. The answer's boxes are pixels of the
    original image (`answer["image"]` gives its size); they are scaled to `image` when it is smaller."""
    original = answer.get("image") or {}
    size = (int(original.get("width") or image.width), int(original.get("height") or image.height))

    def on_canvas(box: dict[str, float]) -> dict[str, float]:
        return box if size == image.size else scale_box(box, size, image.size)

    def drawn(label: str, box: dict[str, float], score: float | None = None) -> DrawnBox:
        placed = on_canvas(box)
        return DrawnBox(label, placed["x1"], placed["y1"], placed["x2"], placed["y2"], score=score)

    boxes = [drawn(d["label"], d["box"], d["score"]) for d in answer.get("detections", [])]
    if answer.get("face"):
        boxes.append(drawn("", answer["face"]["box"]))
    canvas = draw_boxes(image, boxes, labels)
    if "detections" in answer:
        return canvas
    if answer.get("tags"):
        text = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in answer["tags"])
    elif answer.get("label") is not None:
        text = f"{answer['label']} {answer['probability']:.2f}"
    elif answer.get("face_found") is False:
        text = "no face found"
    else:
        text = "no tag"
    if answer.get("uncertain"):
        text += " (uncertain)"
    colour = colour_for(answer["label"], labels) if answer.get("label") else NEUTRAL_COLOUR
    return draw_banner(canvas, text, colour)


def encode(image: Image.Image, fmt: str) -> bytes:
    pillow_format, _ = FORMATS[fmt]
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **({"quality": 90} if pillow_format == "JPEG" else {}))
    return buffer.getvalue()
