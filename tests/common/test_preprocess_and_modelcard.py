from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visiondock.modelcard import ModelCard, ModelCardError
from visiondock.preprocess import PreprocessSpec, fit, to_tensor


def test_shorter_side_resize_then_center_crop() -> None:
    image = Image.new("RGB", (400, 200))
    image.paste((255, 0, 0), (0, 0, 100, 200))  # red left quarter: cut away by the centre crop
    fitted = fit(image, PreprocessSpec(size=224, resize=256))
    assert fitted.size == (224, 224)
    assert fitted.getpixel((112, 112)) == (0, 0, 0)
    assert fitted.getpixel((0, 112))[0] < 50


def test_stretch_keeps_the_whole_frame() -> None:
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 200))
    fitted = fit(image, PreprocessSpec(size=100, resize=100, policy="stretch"))
    assert fitted.size == (100, 100) and fitted.getpixel((0, 50))[0] > 200


def test_normalization_matches_the_backbone_recipe() -> None:
    spec = PreprocessSpec(size=32, resize=32)
    tensor = to_tensor(Image.new("RGB", (32, 32), (0, 255, 51)), spec)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0, 0], [(0 / 255 - 0.5) / 0.5, 1.0, (51 / 255 - 0.5) / 0.5], rtol=1e-6)


def test_spec_and_card_survive_the_metadata_round_trip() -> None:
    spec = PreprocessSpec(size=240, resize=274, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    card = ModelCard(task="multilabel", labels=["a", "b"], preprocess=spec, backbone="efficientnet-lite1",
                     thresholds={"a": 0.3, "b": 0.7}, model_name="m", model_version="3", extra={"k": [1]})
    metadata = card.to_metadata()
    assert all(isinstance(v, str) for v in metadata.values())
    assert ModelCard.from_metadata(metadata) == card


def test_a_file_without_a_card_is_refused_with_a_reason() -> None:
    with pytest.raises(ModelCardError, match="exported by the VisionDock trainer"):
        ModelCard.from_metadata({"producer": "someone else"})
    with pytest.raises(ModelCardError, match="unknown task"):
        ModelCard(task="segmentation", labels=["a"], preprocess=PreprocessSpec(), backbone="x")
    with pytest.raises(ValueError, match="resize policy"):
        PreprocessSpec(policy="letterbox")
