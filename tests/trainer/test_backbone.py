"""The pretrained backbones are real ImageNet models, and their trunk/top split computes the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import chelsea

from services.trainer.backbone import (
    BACKBONE_SPECS,
    PooledFeatures,
    Top,
    Trunk,
    default_preprocess,
    load_pretrained,
    top_start,
)
from visiondock.preprocess import to_tensor

# ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = range(281, 286)


@pytest.mark.training
@pytest.mark.parametrize("name", sorted(BACKBONE_SPECS))
def test_the_imagenet_head_sees_a_cat_in_the_cat_photo(name: str) -> None:
    model = load_pretrained(name)
    image = torch.from_numpy(to_tensor(Image.fromarray(chelsea()), default_preprocess(name)))[None]
    with torch.inference_mode():
        probabilities = model(image).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in CAT_CLASSES
    assert float(probabilities[list(CAT_CLASSES)].sum()) > 0.5
    # ReLU6 stays: set_swish() would silently have replaced it.
    assert isinstance(model._swish, torch.nn.ReLU6)


@pytest.mark.training
def test_trunk_then_top_computes_the_pooled_features() -> None:
    model = load_pretrained("efficientnet-lite0")
    assert top_start(model, 2) == 11  # the last two stages run at 1/32 of the input: 7x7 maps
    start = top_start(model)
    assert start == 15
    image = torch.from_numpy(to_tensor(Image.fromarray(chelsea()), default_preprocess()))[None]
    top = Top(model, start).eval()
    with torch.inference_mode():
        maps = Trunk(model, start)(image)
        assert tuple(maps.shape) == (1, 192, 7, 7)
        np.testing.assert_allclose(top(maps).numpy(), PooledFeatures(model)(image).numpy(), atol=1e-5)
    # Training the top keeps batch norm on its ImageNet statistics.
    top.train()
    assert all(not m.training for m in top.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert any(m.training for m in top.modules() if isinstance(m, torch.nn.ReLU6))
