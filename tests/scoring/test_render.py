"""`/v1/render` draws at the original size, boxes where the objects are, even when the model
decoded a reduced JPEG (draft mode)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.scoring.conftest import AppFactory
from tests.scoring.tiny_models import COLOURS
from visiondock.drawing import colour_for, line_width

RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)


def _shelf_jpeg(size: tuple[int, int]) -> bytes:
    """A camera-sized JPEG: red top-left quadrant, blue bottom-right, black elsewhere."""
    width, height = size
    image = Image.new("RGB", size, BLACK)
    image.paste(RED, (0, 0, width // 2, height // 2))
    image.paste(BLUE, (width // 2, height // 2, width, height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_render_of_a_large_jpeg_keeps_its_size_and_draws_boxes_on_the_objects(
        serve: AppFactory, models: dict[str, Path]) -> None:
    width, height = 1000, 1334
    with serve(models["detection"]) as client:
        answer = client.post("/v1/predict", content=_shelf_jpeg((width, height))).json()
        response = client.post("/v1/render?format=png", content=_shelf_jpeg((width, height)))
    assert response.status_code == 200
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=int)
    assert drawn.shape == (height, width, 3)
    found = {d["label"]: d["box"] for d in answer["detections"]}
    assert found, answer
    line = line_width(width, height)
    for label, box in found.items():
        colour = np.array(colour_for(label, COLOURS))
        x1, y1, x2, y2 = (round(box[k]) for k in ("x1", "y1", "x2", "y2"))
        middle_y, middle_x = (y1 + y2) // 2, (x1 + x2) // 2
        # The tiny detector answers quadrants: each box is half the photo wide and high.
        assert (x2 - x1, y2 - y1) == (width // 2, height // 2 + 1) or (x2 - x1, y2 - y1) == (width // 2, height // 2)
        # The outline runs along the box's edges at full size: its right edge and its bottom edge ...
        assert (np.abs(drawn[middle_y, x2 - line + 1: x2] - colour).sum(axis=1) < 40).all(), label
        assert (np.abs(drawn[y2 - line + 1: y2, middle_x] - colour).sum(axis=1) < 40).all(), label
        # ... and the box's middle is the photo as it was.
        source = np.asarray(Image.open(io.BytesIO(_shelf_jpeg((width, height)))).convert("RGB"), dtype=int)
        assert np.abs(drawn[middle_y, middle_x] - source[middle_y, middle_x]).sum() < 40
