"""Finding the face to identify with OpenCV's Haar cascade, shared by the trainer and the scoring service."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut, chelsea

from tests.trainer.generated import face_photo, lfw_faces
from visiondock.faces import DETECTOR, crop_face, detector_card, find_largest_face
from visiondock.postprocess import box_iou


def test_the_astronaut_has_one_face_with_a_margin_around_it() -> None:
    photo = Image.fromarray(astronaut())
    tight = find_largest_face(photo, margin=0.0)
    wide = find_largest_face(photo, margin=0.2)
    assert tight is not None and wide is not None
    x1, y1, x2, y2 = tight
    # Eileen Collins' face is in the upper middle-left of the 512x512 picture.
    assert 130 < (x1 + x2) / 2 < 290 and 50 < (y1 + y2) / 2 < 180 and 60 < x2 - x1 < 160
    w, h = x2 - x1, y2 - y1
    assert wide == (round(x1 - 0.2 * w), round(y1 - 0.2 * h), round(x2 + 0.2 * w), round(y2 + 0.2 * h))
    crop = crop_face(photo, wide)
    assert crop.size == (wide[2] - wide[0], wide[3] - wide[1]) and crop.mode == "RGB"


def test_no_face_in_a_cat_photo_and_the_margin_is_clipped_to_the_image() -> None:
    assert find_largest_face(Image.fromarray(chelsea())) is None
    assert find_largest_face(Image.new("RGB", (64, 64), (90, 90, 90))) is None
    edge = Image.fromarray(astronaut()).crop((150, 40, 300, 190))  # the face fills the picture
    box = find_largest_face(edge, margin=0.5)
    assert box is not None and box[0] == 0 and box[1] == 0 and box[2] == 150 and box[3] == 150


def test_real_faces_are_found_at_any_photo_size() -> None:
    rng = np.random.default_rng(0)
    photos = [face_photo(face, rng) for face in lfw_faces()[:12]]
    assert sum(find_largest_face(p) is not None for p in photos) >= 10
    big = photos[0].resize((2000, 2000))  # detection runs on a shrunk copy, boxes come back in full pixels
    small_box, big_box = find_largest_face(photos[0]), find_largest_face(big)
    assert small_box is not None and big_box is not None
    overlap = box_iou(np.array(small_box, float), np.array([big_box], float) / 10)[0]
    assert overlap > 0.7
    assert detector_card()["face_detector"] == DETECTOR


@pytest.mark.processes
def test_the_face_finder_does_not_import_torch() -> None:
    # The scoring service imports visiondock.faces; its image must not need torch.
    code = "import sys, visiondock.faces; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
