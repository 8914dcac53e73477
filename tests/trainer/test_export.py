"""ONNX export with the model card, the parity check that stands between an exported file and the
registry, and the INT8 and fp16 variants: on tiny modules, so they run in the fast loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage.data import astronaut, chelsea
from torch import nn

from services.trainer.backbone import PooledFeatures
from services.trainer.compose import compose_classifier
from services.trainer.export import (
    ParityError,
    check_detection_parity,
    check_parity,
    detection_agreement,
    export_graph,
    export_onnx,
)
from services.trainer.half_precision import convert_fp16
from services.trainer.heads import HeadOutputs, ImageClassifier
from services.trainer.quantize import quantize_int8
from services.trainer.selection import Candidate
from visiondock.modelcard import PRECISION_KEY, ModelCard
from visiondock.postprocess import Detection
from visiondock.preprocess import PreprocessSpec, to_tensor

SPEC = PreprocessSpec(size=32, resize=36)


class TinyBackbone(nn.Module):
    """Stands for an EfficientNet in shape only: images → feature maps (`extract_features`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images))


class TinyDetector(nn.Module):
    """Image → boxes [N, 16, 4] (fractions, x1 < x2, y1 < y2) and per-class scores [N, 16, 2]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 8, stride=8)
        with torch.no_grad():
            self.conv.bias[4:] += 2.0  # confident enough that the decoded detections are compared too

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(image).flatten(2).transpose(1, 2)
        centre, size = torch.sigmoid(out[..., :2]), torch.sigmoid(out[..., 2:4]) * 0.4 + 0.05
        boxes = torch.clamp(torch.cat([centre - size / 2, centre + size / 2], dim=-1), 0.0, 1.0)
        return boxes, torch.sigmoid(out[..., 4:])


def photos() -> np.ndarray:
    return np.stack([to_tensor(Image.fromarray(photo), SPEC) for photo in (chelsea(), astronaut())])


def classifier(multilabel: bool = False) -> tuple[ImageClassifier, nn.Linear]:
    torch.manual_seed(0)
    head = nn.Linear(8, 2)
    return ImageClassifier(PooledFeatures(TinyBackbone()), head, multilabel=multilabel).eval(), head


def test_the_exported_file_carries_its_card_and_computes_what_torch_computes(tmp_path: Path) -> None:
    model, _ = classifier(multilabel=True)
    card = ModelCard(task="multilabel", labels=["cat", "person"], preprocess=SPEC, backbone="tiny",
                     thresholds={"cat": 0.4, "person": 0.6}, model_name="pets", model_version="7")
    path = export_onnx(model, card, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map) == card
    batch = photos()  # the batch axis is dynamic
    probabilities = session.run(None, {"image": batch})[0]
    assert probabilities.shape == (2, 2) and ((probabilities > 0) & (probabilities < 1)).all()
    report = check_parity(model, path, batch)
    assert report["max_abs_diff"] < 1e-5 and report["top1_agreement"] == 1.0 and report["checked"] == 2


def test_an_export_that_computes_something_else_is_refused(tmp_path: Path) -> None:
    model, head = classifier()
    card = ModelCard(task="multiclass", labels=["cat", "person"], preprocess=SPEC, backbone="tiny", model_version="7")
    path = export_onnx(model, card, tmp_path / "model.onnx")
    inputs = photos()
    assert check_parity(model, path, inputs)["max_abs_diff"] < 1e-5
    # The torch model moves on after export (as a bug in the export path would make it): refused.
    with torch.no_grad():
        head.weight.mul_(-1)
        head.bias.add_(1.0)
    with pytest.raises(ParityError, match="nothing was registered"):
        check_parity(model, path, inputs)
    with pytest.raises(ParityError, match="no images"):
        check_parity(model, path, inputs[:0])


def test_a_detector_export_is_checked_on_boxes_scores_and_decoded_detections(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = TinyDetector().eval()
    card = ModelCard(task="detection", labels=["can", "box"], preprocess=SPEC, backbone="tiny",
                     output_names=["boxes", "scores"], thresholds={"score": 0.3, "nms_iou": 0.5})
    path = export_onnx(model, card, tmp_path / "detector.onnx")
    inputs = photos()
    report = check_detection_parity(model, path, inputs, card)
    assert report["max_abs_diff"] < 1e-5 and report["detection_agreement"] == 1.0 and report["checked"] == 2
    with torch.no_grad():
        model.conv.bias[:2] += 0.5  # every box moves
    with pytest.raises(ParityError, match="detection agreement"):
        check_detection_parity(model, path, inputs, card)


def exported_classifier(tmp_path: Path) -> tuple[ImageClassifier, nn.Linear, ModelCard, Path, np.ndarray]:
    """A tiny classifier, its card, its fp32 file and 16 inputs to calibrate INT8 on."""
    model, head = classifier()
    card = ModelCard(task="multiclass", labels=["cat", "person"], preprocess=SPEC, backbone="tiny", model_version="3")
    fp32_path = export_onnx(model, card, tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    calibration = np.concatenate([photos(), rng.normal(0, 1, (14, 3, 32, 32)).astype(np.float32)])
    return model, head, card, fp32_path, calibration


def test_the_int8_variant_keeps_the_card_and_quantizes_all_but_the_outputs(tmp_path: Path) -> None:
    _, _, card, fp32_path, calibration = exported_classifier(tmp_path)
    int8_path = quantize_int8(fp32_path, tmp_path / "model.int8.onnx", calibration)
    session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert ModelCard.from_metadata(metadata) == card and metadata[PRECISION_KEY] == "int8"
    graph = onnx.load(str(int8_path)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    # The softmax (and the logits feeding it) stay in float: probabilities still sum to 1, not to steps of 1/255.
    probabilities = session.run(None, {"image": photos()})[0]
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_fp16_variant_keeps_the_card_and_float32_inputs_and_outputs(tmp_path: Path) -> None:
    _, _, card, fp32_path, _ = exported_classifier(tmp_path)
    fp16_path = convert_fp16(fp32_path, tmp_path / "model.fp16.onnx")
    session = ort.InferenceSession(str(fp16_path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert ModelCard.from_metadata(metadata) == card and metadata[PRECISION_KEY] == "fp16"
    # A client sends and receives float32 as with the fp32 file; the weights inside are float16.
    assert [(i.name, i.type) for i in session.get_inputs()] == [("image", "tensor(float)")]
    assert [(o.name, o.type) for o in session.get_outputs()] == [("probabilities", "tensor(float)")]
    graph = onnx.load(str(fp16_path)).graph
    weights = [w for w in graph.initializer if len(w.dims) > 1]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    inputs = photos()
    expected = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).run(None, {"image": inputs})[0]
    assert np.allclose(session.run(None, {"image": inputs})[0], expected, atol=2e-3)


class TinyBackboneAt(nn.Module):
    """Another tiny backbone for ensembles (a different width, like EfficientNet-Lite2 beside Lite0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, stride=2, padding=1)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images))


def member_file(module: nn.Module, path: Path, size: int = 32) -> Path:
    """A frozen member graph as the trainer caches it: input `image`, output `output`, batch dynamic."""
    return export_graph(module, torch.zeros(1, 3, size, size), path, input_name="image", output_names=["output"])


def head_file(head: nn.Module, width: int, path: Path) -> Path:
    return export_graph(HeadOutputs(head, multilabel=False), torch.zeros(1, width), path, input_name="features",
                        output_names=["probabilities"])


def run_file(path: Path, inputs: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": inputs})[0]


def test_a_composed_classifier_computes_backbone_then_head_as_the_torch_model_does(tmp_path: Path) -> None:
    """Quick mode's file: the cached frozen backbone graph and the head graph, put together."""
    model, head = classifier()
    composed = compose_classifier([member_file(model.features, tmp_path / "member.onnx")],
                                  head_file(head, 8, tmp_path / "head.onnx"), tmp_path / "model.onnx", flip=False)
    inputs = photos()
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    assert np.allclose(run_file(composed, inputs), expected, atol=1e-5)
    session = ort.InferenceSession(str(composed), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]


def test_flip_averages_the_features_of_the_image_and_its_mirror_and_ensembles_put_members_side_by_side(
        tmp_path: Path) -> None:
    torch.manual_seed(0)
    first, second = PooledFeatures(TinyBackboneAt(8)).eval(), PooledFeatures(TinyBackboneAt(5)).eval()
    head = nn.Linear(13, 3)
    composed = compose_classifier([member_file(first, tmp_path / "a.onnx"), member_file(second, tmp_path / "b.onnx")],
                                  head_file(head, 13, tmp_path / "head.onnx"), tmp_path / "model.onnx", flip=True)
    inputs = photos()
    with torch.no_grad():
        x = torch.from_numpy(inputs)
        mirrored = torch.flip(x, dims=[3])
        features = torch.cat([(first(x) + first(mirrored)) / 2, (second(x) + second(mirrored)) / 2], dim=1)
        expected = torch.softmax(head(features), dim=1).numpy()
    assert np.allclose(run_file(composed, inputs), expected, atol=1e-5)
    # The mirrored pixels are the trainer's mirrored pass exactly: the tensor reversed along its width.
    assert np.array_equal(np.ascontiguousarray(inputs[:, :, :, ::-1]), mirrored.numpy())


def test_a_sqrt_classifier_feeds_the_head_the_square_roots_of_the_features_side_by_side(tmp_path: Path) -> None:
    """The `sqrt` candidate's file: members (flip-averaged), side by side, square-rooted, then the head."""
    torch.manual_seed(1)
    first, second = PooledFeatures(TinyBackboneAt(8)).eval(), PooledFeatures(TinyBackboneAt(5)).eval()
    head = nn.Linear(13, 3)
    composed = compose_classifier([member_file(first, tmp_path / "a.onnx"), member_file(second, tmp_path / "b.onnx")],
                                  head_file(head, 13, tmp_path / "head.onnx"), tmp_path / "model.onnx", flip=True,
                                  root=True)
    inputs = photos()
    with torch.no_grad():
        x = torch.from_numpy(inputs)
        mirrored = torch.flip(x, dims=[3])
        features = torch.cat([(first(x) + first(mirrored)) / 2, (second(x) + second(mirrored)) / 2], dim=1)
        expected = torch.softmax(head(features.sqrt()), dim=1).numpy()
        unrooted = torch.softmax(head(features), dim=1).numpy()
    answered = run_file(composed, inputs)
    assert np.allclose(answered, expected, atol=1e-5)
    assert not np.allclose(answered, unrooted, atol=1e-3)  # the square root is really in the graph
    # The trainer's transform of the cached features is the graph's.
    assert np.allclose(Candidate(("a", "b"), flip=True, root=True).transform(features.numpy()), features.sqrt().numpy(),
                       atol=1e-6)


def test_quantized_members_under_the_float_head_answer_close_to_fp32(tmp_path: Path) -> None:
    """The INT8 variant of a quick classifier: the same assembly from quantized member graphs."""
    model, head, _, _, calibration = exported_classifier(tmp_path)
    member = member_file(model.features, tmp_path / "member.onnx")
    member_int8 = quantize_int8(member, tmp_path / "member.int8.onnx", calibration, float_feeding_layer=False)
    floats = head_file(head, 8, tmp_path / "head.onnx")
    fp32 = compose_classifier([member], floats, tmp_path / "model.onnx", flip=False)
    int8 = compose_classifier([member_int8], floats, tmp_path / "model.int8.onnx", flip=False)
    nodes = onnx.load(str(int8)).graph.node
    assert any(n.op_type == "QuantizeLinear" for n in nodes) and sum(n.op_type == "Gemm" for n in nodes) == 1
    inputs = photos()
    assert np.abs(run_file(int8, inputs) - run_file(fp32, inputs)).max() < 0.05


def test_detection_agreement_matches_label_and_box() -> None:
    a = [Detection("can", 0.9, 0.1, 0.1, 0.5, 0.5), Detection("box", 0.8, 0.6, 0.6, 0.9, 0.9)]
    shifted = [Detection("can", 0.9, 0.1, 0.1, 0.5, 0.51), Detection("box", 0.8, 0.6, 0.6, 0.9, 0.9)]
    relabeled = [Detection("box", 0.9, 0.1, 0.1, 0.5, 0.5), Detection("box", 0.8, 0.6, 0.6, 0.9, 0.9)]
    assert detection_agreement([a, []], [shifted, []]) == 1.0
    assert detection_agreement([a], [relabeled]) == 0.5
    assert detection_agreement([a], [a[:1]]) == 0.5
