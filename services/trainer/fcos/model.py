"""An FCOS-style anchor-free detector on an EfficientNet-Lite backbone.

Backbone features at strides 8, 16 and 32 go through a light feature pyramid
(lateral 1x1 convolutions, nearest upsampling, 3x3 smoothing) into one head shared
by the three levels: a classification tower and a box tower of plain 3x3
convolutions with ReLU. Every feature-map cell is a candidate ("anchor point") that
predicts per-class logits, its distances to the box sides (left, top, right, bottom,
in units of the level's stride, through exp) and a centre-ness logit.

The exported graph (`ExportedDetector`, with `fold_same_padding`) holds plain Conv
(no Pad), Clip (ReLU6), Relu, Add, nearest Resize to constant sizes (batch and
channels read with Shape), Reshape and Transpose by constants, Concat, Slice,
Sigmoid, Exp, Mul, Sub, Div and Sqrt, and every shape in it is known to ONNX
Runtime's symbolic shape inference: it quantizes to INT8 with the stock tools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from ..backbone import EfficientNet, EfficientNetBlock

LEVEL_STRIDES = (8, 16, 32)
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _stride(block: EfficientNetBlock) -> int:
    stride = block._block_args.stride
    return int(stride[0] if isinstance(stride, list | tuple) else stride)


def stage_ends(blocks: Sequence[EfficientNetBlock]) -> list[int]:
    """Index of the last block at each output stride 8, 16 and 32 (the stem has stride 2)."""
    total = 2
    last_at: dict[int, int] = {}
    for i, block in enumerate(blocks):
        total *= _stride(block)
        last_at[total] = i
    return [last_at[s] for s in LEVEL_STRIDES]


class BackboneFeatures(nn.Module):
    """The EfficientNet-Lite stem and blocks, returning the stride 8, 16 and 32 maps.

    The first `frozen_blocks` blocks (and the stem) keep their ImageNet weights. All
    batch-norm statistics stay frozen: batches of a few images would only add noise.
    """

    def __init__(self, model: EfficientNet, frozen_blocks: int) -> None:
        super().__init__()
        self.stem = model._conv_stem
        self.stem_bn = model._bn0
        self.stem_act = model._swish
        self.ends = stage_ends(model._blocks)
        self.blocks = nn.ModuleList(model._blocks[: self.ends[-1] + 1])
        self.channels = [int(model._blocks[i]._bn2.num_features) for i in self.ends]
        self.frozen_blocks = frozen_blocks
        for module in (self.stem, self.stem_bn, *self.blocks[:frozen_blocks]):
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> BackboneFeatures:
        super().train(False)  # frozen statistics, always
        return self

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x: torch.Tensor = self.stem_act(self.stem_bn(self.stem(image)))
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.ends:
                out.append(x)
        return out


class FeaturePyramid(nn.Module):
    def __init__(self, in_channels: list[int], channels: int, size: int) -> None:
        super().__init__()
        # Upsampling to constant sizes (not by a scale factor) keeps the exported Resize
        # shapes known to ONNX shape inference.
        self.sides = [math.ceil(size / stride) for stride in LEVEL_STRIDES]
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 2, -1, -1):
            side = self.sides[i]
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=(side, side), mode="nearest")
        return [conv(x) for conv, x in zip(self.smooth, laterals, strict=True)]


def _tower(channels: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DetectionHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, depth: int, size: int, prior: float = 0.01) -> None:
        super().__init__()
        self.num_classes = num_classes
        # Cells per level as plain ints: the exported graph reshapes with constants, not
        # with Shape/Slice arithmetic that shape inference (and INT8 tooling) cannot follow.
        self.cells = [math.ceil(size / stride) ** 2 for stride in LEVEL_STRIDES]
        self.cls_tower = _tower(channels, depth)
        self.box_tower = _tower(channels, depth)
        self.cls_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(channels, 4, 3, padding=1)
        self.ctr_out = nn.Conv2d(channels, 1, 3, padding=1)
        # One learned scale per level for the box distances, as in FCOS.
        self.scales = nn.Parameter(torch.ones(len(LEVEL_STRIDES)))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Start every class at `prior` probability so the rare positives are not drowned at first.
        if self.cls_out.bias is not None:
            nn.init.constant_(self.cls_out.bias, -math.log((1 - prior) / prior))

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-candidate class logits [N, A, C], side distances in strides [N, A, 4], centre-ness logits [N, A]."""
        logits, distances, centreness = [], [], []
        for level, x in enumerate(levels):
            cells = self.cells[level]
            c = self.cls_tower(x)
            b = self.box_tower(x)
            logits.append(self.cls_out(c).reshape(-1, self.num_classes, cells).transpose(1, 2))
            # Clamped before exp so an untrained head cannot overflow.
            d = torch.exp(torch.clamp(self.box_out(b) * self.scales[level], max=8.0))
            distances.append(d.reshape(-1, 4, cells).transpose(1, 2))
            centreness.append(self.ctr_out(b).reshape(-1, cells))
        return torch.cat(logits, 1), torch.cat(distances, 1), torch.cat(centreness, 1)


def anchor_points(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres [A, 2] (x, y, input pixels) of every cell of every level, and each cell's stride [A]."""
    points, strides = [], []
    for stride in LEVEL_STRIDES:
        cells = math.ceil(size / stride)
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * stride
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        points.append(torch.stack([xs.flatten(), ys.flatten()], 1))
        strides.append(torch.full((cells * cells,), float(stride)))
    return torch.cat(points), torch.cat(strides)


class Detector(nn.Module):
    """Backbone, pyramid and head: raw outputs for training (see DetectionHead.forward)."""

    def __init__(self, backbone: BackboneFeatures, num_classes: int, *, size: int, channels: int,
                 head_depth: int) -> None:
        super().__init__()
        self.size = size
        self.backbone = backbone
        self.pyramid = FeaturePyramid(backbone.channels, channels, size)
        self.head = DetectionHead(channels, num_classes, head_depth, size)
        points, strides = anchor_points(size)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("strides", strides, persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = self.head(self.pyramid(self.backbone(image)))
        return outputs

    def decode(self, distances: torch.Tensor) -> torch.Tensor:
        """Side distances (in strides) → x1, y1, x2, y2 boxes in input pixels [N, A, 4]."""
        points, strides = self.anchor_points()
        scaled = distances * strides[None, :, None]
        return torch.cat([points[None] - scaled[..., :2], points[None] + scaled[..., 2:]], dim=-1)

    def anchor_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The buffers `anchor_points` filled: each anchor's centre in input pixels, and its stride."""
        points, strides = self.points, self.strides
        assert isinstance(points, torch.Tensor) and isinstance(strides, torch.Tensor)
        return points, strides


def _plain_conv(conv: nn.Conv2d) -> nn.Conv2d | None:
    """A Conv2d with only built-in padding that computes what a padded "same" convolution does.

    EfficientNet's static "same" padding is a ZeroPad2d before the convolution; the
    ONNX exporter turns each into a Pad fed by a dozen shape operators that are neither
    constant-folded nor followed by shape inference (so INT8 tooling trips on them).
    Symmetric padding moves into the convolution. One more row and column before
    (stride-2 layers) becomes a kernel one larger with zero weights in its first row
    and column, padded symmetrically by the larger amount: the same sums, plain Conv.
    """
    pad = getattr(conv, "static_padding", None)
    left, right, top, bottom = pad.padding if isinstance(pad, nn.ZeroPad2d) else (0, 0, 0, 0)
    weight = conv.weight.detach()
    size: tuple[int, int]
    if (left, top) == (right, bottom):
        size = (weight.shape[-2], weight.shape[-1])
    elif (right - left, bottom - top) == (1, 1):
        size = (weight.shape[-2] + 1, weight.shape[-1] + 1)
        grown = weight.new_zeros((*weight.shape[:2], *size))
        grown[..., 1:, 1:] = weight
        weight = grown
    else:
        return None
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, size, stride=_pair(conv.stride), padding=(bottom, right),
                      dilation=_pair(conv.dilation), groups=conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if conv.bias is not None and plain.bias is not None:
            plain.bias.copy_(conv.bias)
    return plain


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D convolution's stride or dilation, as its two numbers."""
    first, second = values
    return first, second


def fold_same_padding(module: ModuleT) -> ModuleT:
    """Replace, in place, every padded "same" convolution by its plain equivalent (see _plain_conv)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and hasattr(child, "static_padding"):
            plain = _plain_conv(child)
            if plain is not None:
                setattr(module, name, plain)
        else:
            fold_same_padding(child)
    return module


class ExportedDetector(nn.Module):
    """The served graph: image [N, 3, S, S] → boxes [N, A, 4] (fractions of the input), scores [N, A, C].

    A candidate's score for a class is sqrt(class probability x centre-ness), the
    FCOS ranking: boxes whose cell sits near an object's centre rank first, which
    is what non-maximum suppression keeps.
    """

    def __init__(self, detector: Detector, *, plain_padding: bool = False) -> None:
        super().__init__()
        # plain_padding rewrites the convolutions in place: pass a copy of a detector you keep training.
        self.detector = fold_same_padding(detector) if plain_padding else detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return served_outputs(self.detector, *self.detector(image))


def served_outputs(detector: Detector, logits: torch.Tensor, distances: torch.Tensor,
                   centreness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's raw outputs → the served boxes (fractions of the input) and scores."""
    boxes = torch.clamp(detector.decode(distances) / float(detector.size), 0.0, 1.0)
    scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(centreness)[..., None])
    return boxes, scores
