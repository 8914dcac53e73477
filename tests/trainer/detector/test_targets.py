"""FCOS assignment and losses on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.trainer.detector.loss import assign, giou_loss
from services.trainer.detector.model import anchor_points

BOUNDS = (64.0, 128.0)


def test_a_small_box_is_learned_by_the_four_stride_8_cells_around_its_centre() -> None:
    points, strides = anchor_points(128)
    box = np.array([[44, 44, 84, 84]], np.float32)  # 40 px, centre (64, 64)
    classes, boxes, positive, ignored, centreness = assign(points, strides, box, np.array([1]),
                                                           np.zeros((0, 4), np.float32), 2, bounds=BOUNDS, radius=1.5)
    chosen = points[positive]
    # Stride-8 cell centres 60 and 68 lie within 1.5 strides (12 px) of 64; 52 and 76 do not.
    assert sorted(map(tuple, chosen.tolist())) == [(60, 60), (60, 68), (68, 60), (68, 68)]
    assert set(strides[positive].tolist()) == {8.0}
    assert classes[positive].tolist() == [[0.0, 1.0]] * 4
    assert classes[~positive].sum() == 0
    torch.testing.assert_close(boxes[positive], torch.tensor([[44.0, 44, 84, 84]] * 4))
    # At (60, 60): left 16, right 24, top 16, bottom 24 → sqrt(16/24 * 16/24).
    assert centreness[positive].tolist() == pytest.approx([2 / 3] * 4, abs=1e-6)
    assert not ignored.any()


def test_large_boxes_go_to_coarse_levels_and_ignore_regions_mute_cells() -> None:
    points, strides = anchor_points(256)
    large = np.array([[28, 28, 228, 228]], np.float32)  # largest side distance ~100 px: the stride-16 level
    _, _, positive, _, _ = assign(points, strides, large, np.array([0]), np.zeros((0, 4), np.float32), 1,
                                  bounds=BOUNDS, radius=1.5)
    assert positive.any() and set(strides[positive].tolist()) == {16.0}
    zone = np.array([[0, 0, 32, 32]], np.float32)
    _, _, positive, ignored, _ = assign(points, strides, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), zone,
                                        1, bounds=BOUNDS, radius=1.5)
    assert not positive.any()
    inside = (points[:, 0] < 32) & (points[:, 1] < 32)
    assert torch.equal(ignored, inside)


def test_giou_loss_by_hand() -> None:
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    # Identical: IoU 1. Disjoint 10x10 squares 10 apart: IoU 0, hull 30x10, union 200 → GIoU -1/3.
    torch.testing.assert_close(giou_loss(a, b), torch.tensor([0.0, 4 / 3]))
