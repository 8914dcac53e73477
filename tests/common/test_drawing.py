"""The one drawing style: known boxes on a known image land on known pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from visiondock.drawing import (
    MIN_TEXT_CONTRAST,
    PALETTE,
    STYLE,
    DrawnBox,
    Strip,
    colour_for,
    contrast_ratio,
    draw_banner,
    draw_boxes,
    font_size,
    line_width,
    place_labels,
    scale_box,
    text_colour_for,
)

WHITE = (255, 255, 255)
LABELS = ["dog", "cat"]


def _pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def test_a_box_is_outlined_on_its_pixels_in_its_labels_colour_and_labeled_above() -> None:
    image = Image.new("RGB", (400, 300), WHITE)
    drawn = draw_boxes(image, [DrawnBox("cat", 50, 80, 250, 200, score=0.5)], LABELS)
    colour = colour_for("cat", LABELS)
    width = line_width(400, 300)
    assert drawn.size == (400, 300) and width == 2
    for x, y in ((50, 140), (51, 140), (249, 140), (250, 140), (150, 200), (150, 199), (150, 81)):
        assert _pixel(drawn, x, y) == colour, (x, y)
    for x, y in ((48, 140), (252, 140), (150, 140), (150, 202), (300, 60)):
        assert _pixel(drawn, x, y) == WHITE, (x, y)
    # The label strip sits just above the box's top left corner, in the same colour, with text in black or
    # white, whichever reads better on it.
    strip = np.asarray(drawn)[80 - font_size(300): 79, 50:90].reshape(-1, 3)
    assert (strip == colour).all(axis=1).sum() > strip.shape[0] // 3
    assert (strip == text_colour_for(colour)).all(axis=1).any()
    assert image.getpixel((50, 140)) == WHITE  # the original is left alone


def test_a_box_at_the_top_edge_carries_its_label_inside() -> None:
    drawn = draw_boxes(Image.new("RGB", (200, 200), WHITE), [DrawnBox("dog", 10, 0, 150, 120)], LABELS)
    inside = np.asarray(drawn)[4:12, 14:40].reshape(-1, 3)
    assert (inside == colour_for("dog", LABELS)).all(axis=1).sum() > inside.shape[0] // 3


def test_a_suggestion_is_dashed() -> None:
    drawn = draw_boxes(Image.new("RGB", (600, 400), WHITE), [DrawnBox("dog", 100, 100, 500, 300, dashed=True)],
                       LABELS)
    edge = np.asarray(drawn)[300 - 1, 100:500]  # the bottom edge, below the label strip
    coloured = (edge == colour_for("dog", LABELS)).all(axis=1)
    assert 0.4 < coloured.mean() < 0.8  # dashes and gaps


def test_colours_follow_the_sorted_labels_and_stay_stable_for_unknown_ones() -> None:
    assert colour_for("cat", ["dog", "cat"]) == PALETTE[0] and colour_for("dog", ["cat", "dog"]) == PALETTE[1]
    assert colour_for("zebra", LABELS) == colour_for("zebra", ["other"])  # crc32, not the per-process hash()
    assert STYLE["palette"][0] == "#e6194b" and len(STYLE["palette"]) == len(PALETTE)


def test_scale_box_and_line_width_follow_the_image_size() -> None:
    assert scale_box({"x1": 100, "y1": 50, "x2": 300, "y2": 150}, (1000, 500), (500, 250)) == \
        {"x1": 50, "y1": 25, "x2": 150, "y2": 75}
    assert line_width(1000, 1333) == 5 and line_width(100, 80) == 2
    assert font_size(1333) == 44 and font_size(100) == 12 and font_size(4000) == 48


def test_a_banner_writes_in_the_top_left_corner() -> None:
    drawn = draw_banner(Image.new("RGB", (300, 200), WHITE), "cat 0.97", colour_for("cat", LABELS))
    corner = np.asarray(drawn)[4:16, 4:40].reshape(-1, 3)
    assert (corner == colour_for("cat", LABELS)).all(axis=1).any()
    assert _pixel(drawn, 250, 150) == WHITE


def test_the_annotation_service_serves_the_style(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from services.annotation.app import create_app
    from visiondock.settings import LOCAL_DEV_API_KEY, Settings

    with TestClient(create_app(Settings(home=tmp_path, log_format="text", log_level="WARNING"))) as client:
        assert client.get("/v1/drawing-style").status_code == 401
        served = client.get("/v1/drawing-style", headers={"X-API-Key": LOCAL_DEV_API_KEY}).json()
    assert served == STYLE


def test_label_text_reads_on_every_palette_colour() -> None:
    # White text on cyan, lime or pink was 1.25 to 1.57 : 1; WCAG asks 4.5 : 1 of text.
    for colour, text in zip(PALETTE, STYLE["label"]["text_colours"], strict=True):
        assert text == "#{:02x}{:02x}{:02x}".format(*text_colour_for(colour))
        assert contrast_ratio(text_colour_for(colour), colour) >= MIN_TEXT_CONTRAST, colour
    assert text_colour_for((70, 240, 240)) == (0, 0, 0) and text_colour_for((128, 0, 0)) == (255, 255, 255)
    assert round(contrast_ratio((255, 255, 255), (0, 0, 0)), 1) == 21.0


def test_labels_that_would_cover_each_other_move_inside_or_below() -> None:
    # Side by side on a shelf: the second box's strip above would cover the first's (wider than its box).
    strips = place_labels([(10, 50, 60, 150, 120, 20), (70, 50, 120, 150, 120, 20), (200, 0, 300, 100, 60, 20),
                           (350, 180, 400, 200, 80, 20)], 400, 200)
    assert strips[0] == Strip(10, 30, 120, 20)          # above, as ever
    assert strips[1] == Strip(70, 50, 120, 20)          # inside its top: above would cover the first
    assert strips[2] == Strip(200, 0, 60, 20)           # at the image's top edge: inside
    assert strips[3] == Strip(320, 160, 80, 20)         # moved left to stay in the image, above its box
    for i, a in enumerate(strips):
        assert not any(a.overlaps(b) for b in strips[i + 1:])


def test_a_crowded_render_keeps_every_label_apart() -> None:
    boxes = [DrawnBox(label, x, 60, x + 25, 160) for label, x in (("squash", 20), ("mushroom", 50), ("eggBox", 80))]
    drawn = np.asarray(draw_boxes(Image.new("RGB", (300, 200), WHITE), boxes, ["eggBox", "mushroom", "squash"]))
    # Each label's colour shows in a strip of its own: the later ones are not painted over the first.
    for box, row in zip(boxes, (50, 66, 50), strict=True):
        colour = colour_for(box.label, ["eggBox", "mushroom", "squash"])
        assert (drawn[row, int(box.x1) + 2:int(box.x1) + 12] == colour).all(axis=1).any(), box.label
