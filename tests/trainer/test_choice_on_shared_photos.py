"""Quick mode's choice on real photos (`../shared/datasets`; skipped without it), end to end through the
services: a candidate on square-rooted features is considered, chosen by the one-standard-error rule
when it cross-validates better at the same cost, stored in the version's selection, and its exported
file answers what the torch backbone, the square root and the head answer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from services.trainer.backbone import PooledFeatures, load_pretrained
from services.trainer.job import run_training
from services.trainer.options import TrainingOptions
from tests.trainer.conftest import project_name, upload_tagged
from visiondock.clients import AnnotationClient, RegistryClient
from visiondock.images import decode_rgb
from visiondock.modelcard import ModelCard
from visiondock.preprocess import to_tensor

pytestmark = pytest.mark.training
# `../shared/datasets` beside the repository, or where VISIONDOCK_DATASETS says.
DATASETS = Path(os.environ.get("VISIONDOCK_DATASETS") or Path(__file__).resolve().parents[3] / "shared" / "datasets")


def hotdog_photos() -> list[tuple[str, bytes]]:
    folder = DATASETS / "hotdog" / "train"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the shared photo sets are not on this machine")
    return [(label.name, path.read_bytes()) for label in sorted(p for p in folder.iterdir() if p.is_dir())
            for path in sorted(label.glob("*.jpg"))]


def linear_head(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """The head's weight [classes, features] and bias from the composed file (its one Gemm)."""
    weights = {w.name: numpy_helper.to_array(w) for w in model.graph.initializer}
    (gemm,) = [n for n in model.graph.node if n.op_type == "Gemm"]
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    weight = weights[gemm.input[1]]
    return (weight if trans_b else weight.T), weights[gemm.input[2]]


def test_square_rooted_features_are_chosen_on_hot_dogs_and_the_file_computes_them(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path, tmp_path: Path) -> None:
    photos = hotdog_photos()
    project = project_name("hotdog")
    annotation.create_project(project, "multiclass", tags=sorted({tag for tag, _ in photos}))
    upload_tagged(annotation, project, photos)

    # Lite0 alone (no budget for more passes), linear head: the plain and the square-rooted candidate cost
    # the same, and on these photos the square roots cross-validate better (about 91 % against 90 %).
    options = TrainingOptions(project=project, cache_dir=cache_dir, progress=False, backbone="efficientnet-lite0",
                              selection_budget=0, head="linear")
    result = run_training(options, annotation, registry)
    version = registry.get_version(project, result.version)
    params = version["params"]
    rows = {row["name"]: row for row in params["selection"]["candidates"]}
    assert set(rows) == {"lite0 linear", "lite0 sqrt linear"}
    assert rows["lite0 sqrt linear"]["sqrt"] and not rows["lite0 linear"]["sqrt"]
    assert rows["lite0 sqrt linear"]["cost"] == rows["lite0 linear"]["cost"]
    assert rows["lite0 sqrt linear"]["score"] > rows["lite0 linear"]["score"]
    assert params["selection"]["chosen"] == "lite0 sqrt linear" and rows["lite0 sqrt linear"]["chosen"]
    assert params["sqrt"] is True and params["backbones"] == ["efficientnet-lite0"]
    low, high = version["metrics"]["estimate"]["interval"]
    assert low < rows["lite0 sqrt linear"]["score"] < high
    # The INT8 variant: quantized members under the same square roots and head. Its file answers as the fp32
    # file does on the check photos, and its out-of-fold accuracy (the features through the same transform)
    # is fp32's within a few photos.
    int8 = version["metrics"]["int8"]
    assert int8["top1_agreement"] >= 0.9 and abs(int8["accuracy_int8"] - int8["accuracy_fp32"]) <= 0.03

    path = registry.download_artifact(project, result.version, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    assert "Sqrt" in {n.op_type for n in model.graph.node}
    if int8["registered"]:
        quantized = registry.download_artifact(project, result.version, tmp_path / "model.int8.onnx", variant="int8")
        assert "Sqrt" in {n.op_type for n in onnx.load(str(quantized)).graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert card.extra["sqrt"] is True
    checked = photos[:12] + photos[-12:]  # both classes
    inputs = np.stack([to_tensor(decode_rgb(data, draft_size=card.preprocess.draft_size), card.preprocess)
                       for _, data in checked])
    weight, bias = linear_head(model)
    with torch.no_grad():
        features = PooledFeatures(load_pretrained("efficientnet-lite0")).eval()(torch.from_numpy(inputs))
        expected = torch.softmax(features.clamp_min(0).sqrt() @ torch.from_numpy(weight).T + torch.from_numpy(bias),
                                 dim=1).numpy()
    answered = session.run(None, {card.input_name: inputs})[0]
    assert np.abs(answered - expected).max() < 1e-3
    assert (answered.argmax(1) == expected.argmax(1)).all()
