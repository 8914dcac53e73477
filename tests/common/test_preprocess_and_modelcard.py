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
    assert fitted.shape == (224, 224, 3) and fitted.dtype == np.uint8
    assert tuple(fitted[112, 112]) == (0, 0, 0)
    assert fitted[112, 0, 0] < 50


def test_stretch_keeps_the_whole_frame() -> None:
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 200))
    fitted = fit(image, PreprocessSpec(size=100, resize=100, policy="stretch"))
    assert fitted.shape == (100, 100, 3) and fitted[50, 0, 0] > 200


def _photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour fields with edges, like a photo (uniform noise is no photo: every pixel an edge)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (max(2, height // 12), max(2, width // 12), 3), np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


def _pillow_fit(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The reference: Pillow's bilinear resize of the whole image, then the centre crop."""
    if spec.policy == "stretch":
        return np.asarray(image.resize((spec.size, spec.size), Image.Resampling.BILINEAR))
    scale = spec.resize / min(image.size)
    width, height = max(spec.size, round(image.width * scale)), max(spec.size, round(image.height * scale))
    left, top = (width - spec.size) // 2, (height - spec.size) // 2
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized.crop((left, top, left + spec.size, top + spec.size)))


@pytest.mark.parametrize(("size", "spec"), [
    ((224, 224), PreprocessSpec(size=224, resize=256)),  # enlarged: the OpenCV path
    ((180, 300), PreprocessSpec(size=224, resize=256)),
    ((240, 240), PreprocessSpec(size=240, resize=274)),
    ((150, 90), PreprocessSpec(size=320, resize=320, policy="stretch")),
    ((1000, 700), PreprocessSpec(size=224, resize=256)),  # shrunk: Pillow's filter
    ((900, 1200), PreprocessSpec(size=448, resize=448, policy="stretch")),
])
def test_fitting_samples_as_pillow_bilinear_does(size: tuple[int, int], spec: PreprocessSpec) -> None:
    image = _photo_like(*size, seed=sum(size))
    difference = np.abs(fit(image, spec).astype(int) - _pillow_fit(image, spec).astype(int))
    # Enlarging samples at 1/32 pixel (OpenCV) instead of exactly: a level at most on photo-like pixels.
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.3


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
