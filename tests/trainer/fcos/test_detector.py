"""The detector learns generated scenes, and its ONNX export answers exactly like torch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

from services.trainer.fcos import (
    INPUT_NAME,
    OUTPUT_NAMES,
    DetectionSample,
    DetectorOptions,
    FittedDetector,
    choose_score_threshold,
    evaluate_detector,
    fit_detector,
)
from services.trainer.fcos.training import EVAL_SCORE_THRESHOLD, ValidationSet, ViewBatcher, validate
from visiondock.postprocess import decode_detections
from visiondock.preprocess import to_tensor

from .scenes import LABELS, negatives, scenes

pytestmark = pytest.mark.training
# Small and quick: 128 px inputs, a dozen epochs on 24 scenes (about 20 s on one thread).
OPTIONS = DetectorOptions(input_size=128, epochs=12, batch_size=4, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # One torch thread: on a shared 2-core machine, two threads per process spin against
    # other processes and run several times slower; alone, one thread costs little here.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def held_out() -> list[DetectionSample]:
    return scenes(10, seed=101)


@pytest.fixture(scope="module")
def trained() -> tuple[FittedDetector, list[tuple[int, dict[str, float]]]]:
    reports: list[tuple[int, dict[str, float]]] = []
    fitted = fit_detector(scenes(24, seed=100) + negatives(3, seed=102), scenes(6, seed=103), LABELS, OPTIONS,
                          on_epoch=lambda epoch, values: reports.append((epoch, values)), progress=False)
    return fitted, reports


def test_training_beats_the_untrained_head_on_held_out_scenes(
        trained: tuple[FittedDetector, list[tuple[int, dict[str, float]]]], held_out: list[DetectionSample]) -> None:
    fitted, _ = trained
    untrained = fit_detector(scenes(4, seed=100), [], LABELS, DetectorOptions(input_size=128, epochs=0, seed=3),
                             progress=False)
    before = evaluate_detector(untrained, held_out)
    after = evaluate_detector(fitted, held_out)
    assert before["map_50"] < 0.1
    assert after["map_50"] > 0.8, after
    assert after["map_50_95"] > before["map_50_95"] + 0.3
    assert set(after["per_class"]) == set(LABELS)
    assert after["image_count"] == len(held_out)
    assert after["box_count"] == sum(len(s.boxes) for s in held_out)


def test_history_callbacks_and_thresholds(trained: tuple[FittedDetector, list[tuple[int, dict[str, float]]]]) -> None:
    fitted, reports = trained
    assert [epoch for epoch, _ in reports] == list(range(1, len(reports) + 1))
    assert {"train_loss", "val_loss", "val_map_50"} <= set(reports[0][1])
    assert len(fitted.history) == len(reports)
    assert fitted.history[-1]["train_loss"] < fitted.history[0]["train_loss"]
    # The served score threshold is chosen on validation images, the default without them.
    assert EVAL_SCORE_THRESHOLD <= choose_score_threshold(fitted, scenes(6, seed=103)) <= 0.9
    assert choose_score_threshold(fitted, []) == fitted.thresholds["score"] == OPTIONS.score_threshold
    assert fitted.thresholds["nms_iou"] == OPTIONS.nms_iou
    assert fitted.params["input_size"] == 128 and fitted.params["epochs_run"] == len(reports)
    # Trained where the GPU is, handed back on the CPU, where export and serving run.
    assert fitted.params["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert {p.device.type for p in fitted.detector.parameters()} == {"cpu"} == {fitted.detector.points.device.type}
    assert fitted.preprocess.policy == "stretch" and fitted.preprocess.size == 128


def test_the_validation_each_epoch_scores_as_the_held_out_evaluation_does(
        trained: tuple[FittedDetector, list[tuple[int, dict[str, float]]]]) -> None:
    # Validation preprocesses its images once and takes one forward pass for the loss and the boxes;
    # its metrics must still be exactly those of the served path (to_tensor, the exported graph).
    fitted, _ = trained
    validation = scenes(6, seed=103)
    batcher = ViewBatcher(OPTIONS, len(LABELS))
    scored = validate(fitted, ValidationSet(validation, fitted.preprocess, OPTIONS, batcher, pin=False), OPTIONS)
    evaluated = evaluate_detector(fitted, validation)
    assert evaluated["map_50_95"] > 0.3
    assert scored["val_map_50"] == pytest.approx(evaluated["map_50"], abs=1e-9)
    assert scored["val_map_50_95"] == pytest.approx(evaluated["map_50_95"], abs=1e-9)
    best = fitted.history[fitted.params["best_epoch"] - 1]
    assert scored["val_map_50_95"] == pytest.approx(best["val_map_50_95"], abs=1e-9)
    assert scored["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_training_is_deterministic_for_a_seed() -> None:
    options = DetectorOptions(input_size=64, epochs=1, batch_size=4, seed=5)
    data = scenes(4, seed=7)
    first = fit_detector(data, [], LABELS, options, progress=False)
    second = fit_detector(data, [], LABELS, options, progress=False)
    images = [s.image for s in data]
    np.testing.assert_array_equal(first.raw_outputs(images)[1], second.raw_outputs(images)[1])


def test_onnx_export_decodes_like_torch(trained: tuple[FittedDetector, list[tuple[int, dict[str, float]]]],
                                        held_out: list[DetectionSample], tmp_path: Path) -> None:
    fitted, _ = trained
    module = fitted.export_module()
    size = fitted.preprocess.size
    path = tmp_path / "detector.onnx"
    torch.onnx.export(module, (torch.zeros(1, 3, size, size),), str(path), input_names=[INPUT_NAME],
                      output_names=list(OUTPUT_NAMES), opset_version=17, dynamo=False,
                      dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    # Quantization-friendly: plain convolutions (no Pad subgraphs), and every shape known to
    # ONNX Runtime's symbolic shape inference, which INT8 preprocessing runs first.
    proto = onnx.load(str(path))
    assert not {"Pad", "ConstantOfShape", "Loop", "If"} & {node.op_type for node in proto.graph.node}
    SymbolicShapeInference.infer_shapes(proto)  # raises when a shape stays unknown

    images = [s.image for s in held_out[:3]]  # a batch of 3: the batch axis is dynamic
    batch = np.stack([to_tensor(img, fitted.preprocess) for img in images])
    onnx_boxes, onnx_scores = session.run(None, {INPUT_NAME: batch})
    torch_boxes, torch_scores = fitted.raw_outputs(images)
    assert onnx_boxes.shape == torch_boxes.shape and onnx_boxes.shape[0] == 3 and onnx_boxes.shape[2] == 4
    assert onnx_scores.shape == (*onnx_boxes.shape[:2], len(LABELS))
    np.testing.assert_allclose(onnx_boxes, torch_boxes, atol=1e-4)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)
    assert onnx_boxes.min() >= 0.0 and onnx_boxes.max() <= 1.0
    assert onnx_scores.min() >= 0.0 and onnx_scores.max() <= 1.0

    served = fitted.predict(images)
    for image, boxes, scores, expected in zip(images, onnx_boxes, onnx_scores, served, strict=True):
        found = decode_detections(boxes, scores, fitted.label_names, width=image.width, height=image.height,
                                  score_threshold=fitted.thresholds["score"], nms_iou=fitted.thresholds["nms_iou"])
        assert [d.label for d in found] == [d.label for d in expected]
        np.testing.assert_allclose([[d.x1, d.y1, d.x2, d.y2, d.score] for d in found],
                                   [[d.x1, d.y1, d.x2, d.y2, d.score] for d in expected], atol=0.05)
    assert sum(len(found) for found in served) > 0  # the comparison compared something
