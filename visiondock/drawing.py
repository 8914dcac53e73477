"""How boxes and labels are drawn on an image: one style for every picture the product shows.

The scoring service's `/v1/render` draws with `draw_boxes` and `draw_banner`; the annotation
service serves `STYLE` as JSON (`GET /v1/drawing-style`) so the labeling app in the browser
draws the same colours, line widths and label strips. Coordinates are pixels of the image
as drawn: callers scale boxes to the canvas (`scale_box`) when the two sizes differ.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]

# Twelve colours that stay apart from each other and from most photo backgrounds.
PALETTE: tuple[Colour, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0))
TEXT_COLOUR: Colour = (255, 255, 255)
NEUTRAL_COLOUR: Colour = (90, 90, 90)  # a banner without a label ("no tag", "no face found")
FACE_COLOUR: Colour = (255, 255, 0)
LINE_FRACTION = 1 / 200  # of the shorter side
MIN_LINE = 2
FONT_FRACTION = 1 / 30  # of the height
MIN_FONT, MAX_FONT = 12, 48
LABEL_PADDING = 3
SUGGESTION_DASH = (4, 3)  # dash and gap of a suggestion's outline, in line widths


def _hex(colour: Colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


STYLE: dict[str, Any] = {
    "palette": [_hex(c) for c in PALETTE],
    "colour_rule": "a label's colour is palette[i % len(palette)] where i is the label's position in the "
                   "alphabetically sorted list of labels in play (a project's tags, a model's labels); a label "
                   "not in that list takes palette[crc32(utf-8 name) % len(palette)]",
    "line_width": {"fraction_of_shorter_side": LINE_FRACTION, "min_px": MIN_LINE,
                   "rule": "max(min_px, round(min(width, height) * fraction_of_shorter_side))"},
    "font_size": {"fraction_of_height": FONT_FRACTION, "min_px": MIN_FONT, "max_px": MAX_FONT,
                  "rule": "clamp(height * fraction_of_height, min_px, max_px), rounded down"},
    "label": {"text_colour": _hex(TEXT_COLOUR), "padding_px": LABEL_PADDING,
              "background": "the label's colour",
              "placement": "a filled strip whose left edge is the box's left edge, just above the box's top; "
                           "inside the box at its top when there is no room above",
              "text": "the label, then the score with two decimals when there is one: 'squash 0.93'"},
    "banner": {"placement": "the top left corner, one line width in", "neutral_colour": _hex(NEUTRAL_COLOUR),
               "text": "classifications: 'label 0.97', several tags joined by ', ', ' (uncertain)' appended"},
    "suggestion": {"dash_in_line_widths": list(SUGGESTION_DASH), "rule": "a model's suggestion is drawn dashed "
                   "(dash and gap times the line width); a person's label solid"},
    "face_colour": _hex(FACE_COLOUR),
}


@dataclass(frozen=True)
class DrawnBox:
    """A box in pixels of the canvas, with its label and optionally a score."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float | None = None
    dashed: bool = False


def colour_for(label: str, labels: Sequence[str]) -> Colour:
    ordered = sorted(set(labels))
    if label in ordered:
        return PALETTE[ordered.index(label) % len(PALETTE)]
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]  # stable across processes, unlike hash()


def line_width(width: int, height: int) -> int:
    return max(MIN_LINE, round(min(width, height) * LINE_FRACTION))


def font_size(height: int) -> int:
    return int(min(MAX_FONT, max(MIN_FONT, height * FONT_FRACTION)))


def scale_box(box: dict[str, float], from_size: tuple[int, int], to_size: tuple[int, int]) -> dict[str, float]:
    """A pixel box `{x1, y1, x2, y2}` of an image of `from_size` in pixels of the same image at `to_size`."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return {"x1": box["x1"] * sx, "y1": box["y1"] * sy, "x2": box["x2"] * sx, "y2": box["y2"] * sy}


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=font_size(height))
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _strip(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: Colour, font: Any) -> None:
    """`text` on a filled strip whose lower left corner is (x, y), or whose upper left is when no room above."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 2 * LABEL_PADDING, bottom - top + 2 * LABEL_PADDING
    y0 = y - height if y - height >= 0 else y
    draw.rectangle((x, y0, x + width, y0 + height), fill=colour)
    draw.text((x + LABEL_PADDING - left, y0 + LABEL_PADDING - top), text, fill=TEXT_COLOUR, font=font)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], colour: Colour,
                      width: int) -> None:
    x1, y1, x2, y2 = box
    dash, gap = SUGGESTION_DASH[0] * width, SUGGESTION_DASH[1] * width
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        position = 0.0
        while position < length:
            end = min(position + dash, length)
            fa, fb = position / length, end / length
            draw.line((ax + (bx - ax) * fa, ay + (by - ay) * fa, ax + (bx - ax) * fb, ay + (by - ay) * fb),
                      fill=colour, width=width)
            position = end + gap


def label_text(label: str, score: float | None) -> str:
    return label if score is None else f"{label} {score:.2f}"


def draw_boxes(image: Image.Image, boxes: Sequence[DrawnBox], labels: Sequence[str]) -> Image.Image:
    """A copy of `image` with each box outlined in its label's colour and labeled above its corner."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    font = _font(canvas.height)
    width = line_width(*canvas.size)
    for box in boxes:
        colour = FACE_COLOUR if box.label == "" else colour_for(box.label, labels)
        corners = (box.x1, box.y1, box.x2, box.y2)
        if box.dashed:
            _dashed_rectangle(draw, corners, colour, width)
        else:
            draw.rectangle(corners, outline=colour, width=width)
        if box.label:
            _strip(draw, box.x1, box.y1, label_text(box.label, box.score), colour, font)
    return canvas


def draw_banner(image: Image.Image, text: str, colour: Colour = NEUTRAL_COLOUR) -> Image.Image:
    """A copy of `image` with `text` in a strip at the top left corner (a classification)."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = line_width(*canvas.size)
    _strip(draw, width, width + 1, text, colour, _font(canvas.height))
    return canvas
