"""The parity check that stands between an exported file and the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut, chelsea

from services.trainer.backbone import PooledFeatures, default_preprocess, load_pretrained
from services.trainer.classification import ImageClassifier
from services.trainer.export import ParityError, check_parity, detection_agreement, export_onnx
from visiondock.modelcard import ModelCard
from visiondock.postprocess import Detection
from visiondock.preprocess import to_tensor


def test_an_export_that_computes_something_else_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = default_preprocess()
    head = torch.nn.Linear(1280, 2)
    model = ImageClassifier(PooledFeatures(load_pretrained()), head, multilabel=False).eval()
    card = ModelCard(task="multiclass", labels=["cat", "person"], preprocess=spec, backbone="efficientnet-lite0",
                     model_version="7")
    path = export_onnx(model, card, tmp_path / "model.onnx")
    inputs = np.stack([to_tensor(Image.fromarray(photo), spec) for photo in (chelsea(), astronaut())])
    report = check_parity(model, path, inputs)
    assert report["max_abs_diff"] < 1e-4 and report["top1_agreement"] == 1.0 and report["checked"] == 2
    # The torch model moves on after export (as a bug in the export path would make it): refused.
    with torch.no_grad():
        head.weight.mul_(-1)
    with pytest.raises(ParityError, match="nothing was registered"):
        check_parity(model, path, inputs)
    with pytest.raises(ParityError, match="no images"):
        check_parity(model, path, inputs[:0])


def test_detection_agreement_matches_label_and_box() -> None:
    a = [Detection("can", 0.9, 0.1, 0.1, 0.5, 0.5), Detection("box", 0.8, 0.6, 0.6, 0.9, 0.9)]
    shifted = [Detection("can", 0.9, 0.1, 0.1, 0.5, 0.51), Detection("box", 0.8, 0.6, 0.6, 0.9, 0.9)]
    relabeled = [Detection("box", 0.9, 0.1, 0.1, 0.5, 0.5), Detection("box", 0.8, 0.6, 0.6, 0.9, 0.9)]
    assert detection_agreement([a, []], [shifted, []]) == 1.0
    assert detection_agreement([a], [relabeled]) == 0.5
    assert detection_agreement([a], [a[:1]]) == 0.5
