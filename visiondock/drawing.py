"""How boxes and labels are drawn on an image: one style for every picture the product shows.

The scoring service's `/v1/render` draws with `draw_boxes` and `draw_banner`; the annotation
service serves `STYLE` as JSON (`GET /v1/drawing-style`) so the labeling app in the browser
draws the same colours, line widths and label strips. Label text is black or white, whichever
contrasts more with its strip (at least 4.5 : 1 for every palette colour, WCAG's threshold for
text), and strips that would cover each other move inside or below their box (`place_labels`;
the app's `layout.js` follows the same rule). Coordinates are pixels of the image as drawn:
callers scale boxes to the canvas (`scale_box`) when the two sizes differ.
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
# Label text: whichever of the two contrasts more with the strip's colour (text_colour_for).
TEXT_COLOURS: tuple[Colour, Colour] = ((0, 0, 0), (255, 255, 255))
MIN_TEXT_CONTRAST = 4.5  # WCAG 2's minimum for text
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


def _luminance(colour: Colour) -> float:
    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: Colour, second: Colour) -> float:
    """WCAG 2 contrast ratio of two colours, 1 to 21."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_colour_for(background: Colour) -> Colour:
    """Black or white, whichever reads better on `background`."""
    return max(TEXT_COLOURS, key=lambda text: contrast_ratio(text, background))


STYLE: dict[str, Any] = {
    "palette": [_hex(c) for c in PALETTE],
    "colour_rule": "a label's colour is palette[i % len(palette)] where i is the label's position in the "
                   "alphabetically sorted list of labels in play (a project's tags, a model's labels); a label "
                   "not in that list takes palette[crc32(utf-8 name) % len(palette)]",
    "line_width": {"fraction_of_shorter_side": LINE_FRACTION, "min_px": MIN_LINE,
                   "rule": "max(min_px, round(min(width, height) * fraction_of_shorter_side))"},
    "font_size": {"fraction_of_height": FONT_FRACTION, "min_px": MIN_FONT, "max_px": MAX_FONT,
                  "rule": "clamp(height * fraction_of_height, min_px, max_px), rounded down"},
    "label": {"text_colours": [_hex(text_colour_for(c)) for c in PALETTE],
              "text_colour_rule": "text_colours[i] on palette[i]: black or white, whichever contrasts more with "
                                  "the strip (at least 4.5 : 1 for every palette colour)",
              "padding_px": LABEL_PADDING,
              "background": "the label's colour",
              "placement": "a filled strip whose left edge is the box's left edge (moved left to stay in the "
                           "image), tried just above the box, inside it at its top, just below it, inside it at "
                           "its bottom: the first place inside the image that covers no label drawn before wins; "
                           "when all collide, the first inside the image",
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


@dataclass(frozen=True)
class Strip:
    """A label strip's top left corner and size, in pixels."""

    x: float
    y: float
    width: float
    height: float

    def overlaps(self, other: Strip) -> bool:
        return (self.x < other.x + other.width and other.x < self.x + self.width
                and self.y < other.y + other.height and other.y < self.y + self.height)


def place_labels(boxes: Sequence[tuple[float, float, float, float, float, float]], width: int,
                 height: int) -> list[Strip]:
    """Each box's label strip (boxes: x1, y1, x2, y2 and the strip's width and height), in order: above the
    box, inside its top, below it, inside its bottom, its left edge at the box's (moved left to stay in the
    image); the first place inside the image that covers no strip placed before, else the first inside."""
    placed: list[Strip] = []
    for x1, y1, _x2, y2, strip_width, strip_height in boxes:
        x = max(0.0, min(x1, width - strip_width))
        candidates = [Strip(x, y, strip_width, strip_height) for y in (y1 - strip_height, y1, y2, y2 - strip_height)]
        inside = [c for c in candidates if c.y >= 0 and c.y + c.height <= height]
        free = next((c for c in inside if not any(c.overlaps(p) for p in placed)), None)
        placed.append(free or (inside[0] if inside else Strip(x, max(0.0, y1), strip_width, strip_height)))
    return placed


def _strip_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[float, float, float, float]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left + 2 * LABEL_PADDING, bottom - top + 2 * LABEL_PADDING, left, top


def _strip_at(draw: ImageDraw.ImageDraw, strip: Strip, text: str, colour: Colour, font: Any) -> None:
    _, _, left, top = _strip_size(draw, text, font)
    draw.rectangle((strip.x, strip.y, strip.x + strip.width, strip.y + strip.height), fill=colour)
    draw.text((strip.x + LABEL_PADDING - left, strip.y + LABEL_PADDING - top), text, fill=text_colour_for(colour),
              font=font)


def _strip(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: Colour, font: Any) -> None:
    """`text` on a filled strip whose lower left corner is (x, y), or whose upper left is when no room above."""
    width, height, _, _ = _strip_size(draw, text, font)
    _strip_at(draw, Strip(x, y - height if y - height >= 0 else y, width, height), text, colour, font)


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
    labeled = []
    for box in boxes:
        colour = FACE_COLOUR if box.label == "" else colour_for(box.label, labels)
        corners = (box.x1, box.y1, box.x2, box.y2)
        if box.dashed:
            _dashed_rectangle(draw, corners, colour, width)
        else:
            draw.rectangle(corners, outline=colour, width=width)
        if box.label:
            labeled.append((box, colour, label_text(box.label, box.score)))
    # The strips after every outline, so no outline crosses a label.
    sizes = [_strip_size(draw, text, font)[:2] for _, _, text in labeled]
    strips = place_labels([(b.x1, b.y1, b.x2, b.y2, w, h) for (b, _, _), (w, h) in zip(labeled, sizes, strict=True)],
                          canvas.width, canvas.height)
    for (_, colour, text), strip in zip(labeled, strips, strict=True):
        _strip_at(draw, strip, text, colour, font)
    return canvas


def draw_banner(image: Image.Image, text: str, colour: Colour = NEUTRAL_COLOUR) -> Image.Image:
    """A copy of `image` with `text` in a strip at the top left corner (a classification)."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = line_width(*canvas.size)
    _strip(draw, width, width + 1, text, colour, _font(canvas.height))
    return canvas
