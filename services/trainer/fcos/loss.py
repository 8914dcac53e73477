"""FCOS training targets and losses: focal loss, GIoU loss and centre-ness.

Assignment: a candidate cell is positive for a box when its centre lies inside the
box, within `radius` strides of the box centre (centre sampling), and the box's
largest side distance from it falls in the cell's level range (small boxes on the
fine level, large ones on the coarse). A cell claimed by several boxes takes the
smallest. Cells inside ignore regions (boxes mostly cut off by augmentation) get no
classification loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .augment import View
from .model import LEVEL_STRIDES


@dataclass
class Targets:
    """A batch's targets: class one-hots [N, A, C], boxes [N, A, 4] (input pixels),
    positive [N, A] and ignored [N, A] masks, centre-ness [N, A]."""

    classes: torch.Tensor
    boxes: torch.Tensor
    positive: torch.Tensor
    ignored: torch.Tensor
    centreness: torch.Tensor


def level_ranges(strides: torch.Tensor, bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell [low, high) range of the largest side distance a box may have on that cell's level."""
    edges = [0.0, *bounds, float("inf")]
    low = torch.empty_like(strides)
    high = torch.empty_like(strides)
    for level, stride in enumerate(LEVEL_STRIDES):
        on_level = strides == stride
        low[on_level], high[on_level] = edges[level], edges[level + 1]
    return low, high


def assign(points: torch.Tensor, strides: torch.Tensor, boxes: np.ndarray, labels: np.ndarray,
           ignore: np.ndarray, num_classes: int, *, bounds: tuple[float, float],
           radius: float) -> tuple[torch.Tensor, ...]:
    """One image's targets (see Targets), boxes and ignore regions in input pixels."""
    count = points.shape[0]
    classes = torch.zeros(count, num_classes)
    target_boxes = torch.zeros(count, 4)
    centreness = torch.zeros(count)
    positive = torch.zeros(count, dtype=torch.bool)
    ignored = torch.zeros(count, dtype=torch.bool)
    xs, ys = points[:, 0:1], points[:, 1:2]
    if len(ignore):
        zones = torch.from_numpy(ignore)
        ignored = ((xs > zones[:, 0]) & (xs < zones[:, 2]) & (ys > zones[:, 1]) & (ys < zones[:, 3])).any(1)
    if len(boxes):
        gt = torch.from_numpy(boxes)  # [K, 4]
        sides = torch.stack([xs - gt[:, 0], ys - gt[:, 1], gt[:, 2] - xs, gt[:, 3] - ys], dim=2)  # [A, K, 4]
        inside = sides.min(dim=2).values > 0
        cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
        reach = radius * strides[:, None]
        near_centre = ((xs - cx).abs() < reach) & ((ys - cy).abs() < reach)
        low, high = level_ranges(strides, bounds)
        largest = sides.max(dim=2).values
        right_level = (largest >= low[:, None]) & (largest < high[:, None])
        candidate = inside & near_centre & right_level
        area = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))[None].expand(count, -1)
        area = torch.where(candidate, area, torch.full_like(area, float("inf")))
        smallest, owner = area.min(dim=1)
        positive = torch.isfinite(smallest)
        owner_labels = torch.from_numpy(labels)[owner]
        classes[positive, owner_labels[positive]] = 1.0
        target_boxes = gt[owner]
        own = sides[torch.arange(count), owner]  # [A, 4]
        lr, tb = own[:, [0, 2]], own[:, [1, 3]]
        ratio = (lr.min(1).values / lr.max(1).values.clamp(min=1e-6)) * \
            (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))
        centreness = torch.where(positive, ratio.clamp(min=0).sqrt(), torch.zeros_like(ratio))
    return classes, target_boxes, positive, ignored & ~positive, centreness


def batch_targets(points: torch.Tensor, strides: torch.Tensor, views: Sequence[View], num_classes: int, *,
                  bounds: tuple[float, float], radius: float) -> Targets:
    parts = [assign(points, strides, v.boxes, v.labels, v.ignore, num_classes, bounds=bounds, radius=radius)
             for v in views]
    return Targets(*(torch.stack(column) for column in zip(*parts, strict=True)))


def giou_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalized IoU of matching x1, y1, x2, y2 rows."""
    ix1 = torch.maximum(predicted[:, 0], target[:, 0])
    iy1 = torch.maximum(predicted[:, 1], target[:, 1])
    ix2 = torch.minimum(predicted[:, 2], target[:, 2])
    iy2 = torch.minimum(predicted[:, 3], target[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    area_p = (predicted[:, 2] - predicted[:, 0]) * (predicted[:, 3] - predicted[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.maximum(predicted[:, 2], target[:, 2]) - torch.minimum(predicted[:, 0], target[:, 0])) * \
        (torch.maximum(predicted[:, 3], target[:, 3]) - torch.minimum(predicted[:, 1], target[:, 1]))
    return 1 - (iou - (hull - union) / hull.clamp(min=1e-6))


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss per element (Lin et al. 2017)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return weight * ce * (1 - p_t) ** gamma


def detection_loss(logits: torch.Tensor, boxes: torch.Tensor, centreness: torch.Tensor,
                   targets: Targets, *, box_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The FCOS loss of a batch: boxes are the decoded predictions in input pixels [N, A, 4]."""
    positive = targets.positive
    count = positive.sum().clamp(min=1).float()
    counted = (~targets.ignored).float()[..., None]
    cls = (focal_loss(logits, targets.classes) * counted).sum() / count
    if positive.any():
        weight = targets.centreness[positive]
        box = (giou_loss(boxes[positive], targets.boxes[positive]) * weight).sum() / weight.sum().clamp(min=1e-6)
        ctr = F.binary_cross_entropy_with_logits(centreness[positive], weight, reduction="mean")
    else:
        box = ctr = logits.sum() * 0.0
    total = cls + box_weight * box + ctr
    return {"loss": total, "cls": cls, "box": box, "ctr": ctr}
