"""An answer drawn on its image: boxes with labels and scores, or the label in a banner."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0))


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    size = max(12, min(48, height // 30))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _colour(label: str, labels: list[str]) -> tuple[int, int, int]:
    index = labels.index(label) if label in labels else abs(hash(label))
    return PALETTE[index % len(PALETTE)]


def _tag(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: tuple[int, int, int],
         font: Any) -> None:
    """`text` on a filled strip whose lower left corner is (x, y): above a box, or inside it at the top."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 3
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    y0 = y - height if y - height >= 0 else y
    draw.rectangle((x, y0, x + width, y0 + height), fill=colour)
    draw.text((x + pad - left, y0 + pad - top), text, fill=(255, 255, 255), font=font)


def draw_answer(image: Image.Image, answer: dict[str, Any], labels: list[str]) -> Image.Image:
    """A copy of `image` (upright, full size) with the answer drawn on it."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    font = _font(canvas.height)
    line = max(2, round(min(canvas.size) / 200))
    for detection in answer.get("detections", []):
        box = detection["box"]
        colour = _colour(detection["label"], labels)
        draw.rectangle((box["x1"], box["y1"], box["x2"], box["y2"]), outline=colour, width=line)
        _tag(draw, box["x1"], box["y1"], f"{detection['label']} {detection['score']:.2f}", colour, font)
    face = answer.get("face")
    if face:
        box = face["box"]
        draw.rectangle((box["x1"], box["y1"], box["x2"], box["y2"]), outline=(255, 255, 0), width=line)
    if "detections" not in answer:
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
        colour = _colour(answer.get("label") or "", labels) if answer.get("label") else (90, 90, 90)
        _tag(draw, line, line + 1, text, colour, font)
    return canvas


def encode(image: Image.Image, fmt: str) -> bytes:
    pillow_format, _ = FORMATS[fmt]
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **({"quality": 90} if pillow_format == "JPEG" else {}))
    return buffer.getvalue()
