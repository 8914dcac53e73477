"""Training runs end to end against the services as real processes: every task, both modes, the
feature cache, the INT8 and fp16 variants, and the run resource that reports all of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli.local_services import LocalServices
from services.trainer.data import TrainingDataError
from services.trainer.job import run_training
from services.trainer.options import TrainingOptions
from tests.trainer.conftest import project_name, upload_tagged, upload_unlabeled
from tests.trainer.generated import (
    box_scene,
    colour_images,
    face_images,
    jpeg,
    multilabel_images,
    shape_images,
)
from visiondock.clients import AnnotationClient, RegistryClient, ServiceError
from visiondock.images import decode_rgb
from visiondock.modelcard import ModelCard
from visiondock.preprocess import to_tensor

pytestmark = pytest.mark.training
SHAPES = ("circle", "square", "triangle")


def config(project: str, cache_dir: Path, **options: object) -> TrainingOptions:
    return TrainingOptions(project=project, cache_dir=cache_dir, progress=False, **options)  # type: ignore[arg-type]


def load_version(registry: RegistryClient, model: str, version: int, tmp_path: Path,
                 variant: str | None = None) -> tuple[ort.InferenceSession, ModelCard, dict]:
    path = registry.download_artifact(model, version, tmp_path / f"{model}-{version}-{variant}.onnx", variant=variant)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    return session, ModelCard.from_metadata(metadata), metadata


def corrupt_blob(services: LocalServices, project: str, image_id: str) -> None:
    """Damage a stored image on disk, as a failing disk would: same size, bytes that do not decode."""
    path = services.home / "blobs" / "data" / "images" / project / image_id
    path.write_bytes(b"\0" * path.stat().st_size)


def test_quick_run_registers_a_self_describing_version_and_retrains_only_new_images(
        annotation: AnnotationClient, registry: RegistryClient, services: LocalServices, cache_dir: Path,
        tmp_path: Path) -> None:
    project = project_name("shapes")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    first = upload_tagged(annotation, project, shape_images(SHAPES, 8, seed=1))
    result = run_training(config(project, cache_dir), annotation, registry)

    # 24 images: the budget affords every backbone, plain and mirrored.
    assert result.report["features"] == {"computed": 24 * 6, "cached": 0}
    run = registry.get_run(result.run_id)
    assert run["status"] == "succeeded" and run["version"] == result.version and run["stage"] == "registered"
    version = registry.get_version(project, result.version)
    assert version["run_id"] == result.run_id and version["task"] == "multiclass"
    # Cross-validated on every image; the model learned from all of them.
    splits = version["splits"]
    assert set(splits["train"]) == {image["id"] for image in first} and splits["validation"] == splits["test"] == []
    metrics = version["metrics"]
    for key in ("accuracy", "per_class", "pr_curves", "confusion_matrix", "history", "threshold", "export_parity",
                "estimate", "near_duplicates", "label_issues"):
        assert key in metrics, key
    assert set(metrics["per_class"]["circle"]) >= {"precision", "recall", "f1", "ap", "support"}
    assert metrics["export_parity"]["max_abs_diff"] < 1e-3 and metrics["export_parity"]["top1_agreement"] == 1.0
    # The curve is one fold's fit, its held-out images as validation.
    assert metrics["history"][0]["epoch"] == 1 and "val_loss" in metrics["history"][-1]
    assert metrics["evaluation"] == {"method": "cross-validation", "folds": 5, "repeats": 5, "images": 24}
    assert metrics["refit"] == {"images": 24} and version["params"]["refit"] is True
    estimate = metrics["estimate"]
    assert estimate["source"] == "out-of-fold" and estimate["images"] == 24 and estimate["metric"] == "accuracy"
    assert estimate["interval"][0] <= estimate["value"] == metrics["accuracy"] <= estimate["interval"][1]
    assert metrics["threshold"]["chosen_on"] == "default" and metrics["threshold"]["value"] == 0.5  # 24 < 30
    assert "fewer than 30" in metrics["threshold"]["note"]
    # The choice and its table are stored with the version.
    selection = version["params"]["selection"]
    assert selection["rule"] == "cheapest within one standard error of the best" and selection["images"] == 24
    chosen = [row for row in selection["candidates"] if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["name"] == selection["chosen"] and chosen[0]["within_one_se"]
    assert (version["params"]["backbones"], version["params"]["head"]) == (chosen[0]["backbones"], chosen[0]["head"])
    # INT8 and fp16 are tried for every version unless turned off; INT8 is judged on the out-of-fold predictions.
    assert version["params"]["mode"] == "quick" and version["params"]["int8"] is version["params"]["fp16"] is True
    int8 = metrics["int8"]
    assert int8["registered"] is int8["keeps_accuracy"] is True and int8["images"] == 24
    assert int8["judged_on"] == "out-of-fold predictions of 24 images" and int8["difference"] >= -0.005
    assert metrics["fp16"]["registered"] is True
    assert set(version["variants"]) == {"int8", "fp16"} and metrics["fp16"]["top1_agreement"] == 1.0
    assert result.report["timings"]["quantize_s"] > 0 and result.report["timings"]["fp16_s"] > 0
    # Plain drawings: no label is doubted, and the list says so.
    assert registry.label_issues(project, result.version) == {
        "model": project, "version": result.version, "project_id": project, "threshold": 0.2, "checked": 24,
        "count": 0, "items": []}

    # The file describes itself: the scoring service needs nothing else.
    session, card, _ = load_version(registry, project, result.version, tmp_path)
    assert card.task == "multiclass" and card.labels == sorted(SHAPES)
    assert card.model_version == str(result.version) and card.model_name == project
    assert set(card.thresholds) == {"uncertain"} and card.extra["run_id"] == result.run_id
    image = annotation.get_image_bytes(project, splits["train"][0])
    probabilities = session.run(None, {"image": to_tensor(decode_rgb(image), card.preprocess)[None]})[0]
    assert probabilities.shape == (1, 3) and abs(float(probabilities.sum()) - 1.0) < 1e-4

    # The same images again with another head on Lite0 alone: the quantized backbone comes from the cache, and
    # the INT8 variant (that backbone under the new float head) still answers like the fp32 model.
    backbones = set((cache_dir / "models").glob("*-pooled-int8-*.onnx"))
    assert result.report["int8_backbone"] in ("quantized", "cached") and backbones
    lite0 = {"backbone": "efficientnet-lite0", "selection_budget": 0}
    mlp = run_training(config(project, cache_dir, head="mlp", **lite0), annotation, registry)
    mlp_rows = registry.get_version(project, mlp.version)["params"]["selection"]["candidates"]
    assert [row["name"] for row in mlp_rows] == ["lite0 mlp", "lite0 sqrt mlp"]  # the features, and their roots
    assert mlp.report["features"] == {"computed": 0, "cached": 24}
    assert mlp.metrics["int8"]["registered"] is True and mlp.metrics["int8"]["top1_agreement"] == 1.0
    if version["params"]["backbones"] == ["efficientnet-lite0"] and not version["params"]["flip"]:
        assert mlp.report["int8_backbone"] == "cached"
        assert set((cache_dir / "models").glob("*-pooled-int8-*")) == backbones
    int8_session, _, _ = load_version(registry, project, mlp.version, tmp_path, variant="int8")
    fp32_session, mlp_card, _ = load_version(registry, project, mlp.version, tmp_path)
    batch = np.stack([to_tensor(decode_rgb(annotation.get_image_bytes(project, i)), mlp_card.preprocess)
                      for i in splits["train"][:8]])
    int8_answers, fp32_answers = (s.run(None, {"image": batch})[0] for s in (int8_session, fp32_session))
    assert np.abs(int8_answers - fp32_answers).max() < 0.05

    # Four new images and one whose stored bytes broke: only the four get features computed;
    # the broken one is skipped and listed.
    added = upload_tagged(annotation, project, shape_images(SHAPES[:1], 5, seed=2))
    corrupt_blob(services, project, added[-1]["id"])
    again = run_training(config(project, cache_dir, int8=False, **lite0), annotation, registry)
    assert again.report["features"] == {"computed": 4, "cached": 24}
    assert "int8" not in again.metrics and set(registry.get_version(project, again.version)["variants"]) == {"fp16"}
    assert [item["id"] for item in again.skipped] == [added[-1]["id"]]
    assert again.version == mlp.version + 1
    assert registry.get_run(again.run_id)["report"]["skipped"][0]["id"] == added[-1]["id"]

    # A test split kept out: the metrics are measured on it, the estimate comes from the larger set (the
    # out-of-fold predictions here), and without the refit the exported model never saw the test images.
    held = run_training(config(project, cache_dir, int8=False, refit=False, evaluation="held-out", **lite0),
                        annotation, registry)
    assert held.metrics["refit"] is False and held.metrics["evaluation"]["method"] == "held-out"
    test_count = held.metrics["evaluation"]["test_images"]
    assert test_count >= 3 and held.metrics["test_count"] == test_count
    assert held.metrics["estimate_held_out"]["images"] == test_count
    assert held.metrics["estimate"] == held.metrics["estimate_out_of_fold"]
    refit = run_training(config(project, cache_dir, int8=False, evaluation="held-out", **lite0), annotation,
                         registry)
    assert refit.metrics["refit"] == {"images": 28}  # 24 + 4 new (the broken one skipped)


def test_two_photos_per_class_train_on_all_of_them_with_cross_validated_metrics(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path, tmp_path: Path) -> None:
    colours = {"red": (200, 30, 30), "green": (30, 160, 40), "blue": (30, 50, 200), "yellow": (220, 210, 40),
               "white": (235, 235, 235), "black": (20, 20, 20)}
    project = project_name("tiny")
    annotation.create_project(project, "multiclass", tags=list(colours))
    images = upload_tagged(annotation, project, colour_images(colours, 2, seed=21), split="train")
    result = run_training(config(project, cache_dir, int8=False), annotation, registry)

    metrics = result.metrics
    assert metrics["evaluation"] == {"method": "cross-validation", "folds": 2, "repeats": 5, "images": 12}
    assert metrics["train_count"] == 12 and metrics["refit"] == {"images": 12}
    assert metrics["accuracy"] == 1.0 and metrics["estimate"]["images"] == 12
    # Twelve images are too few to choose a threshold on: the default, and the version says why.
    assert metrics["threshold"]["chosen_on"] == "default" and metrics["threshold"]["value"] == 0.5
    assert "2-fold cross-validation" in result.report["warnings"][0]
    assert any("fewer than 30" in warning for warning in result.report["warnings"])
    version = registry.get_version(project, result.version)
    assert len(version["splits"]["train"]) == 12 and version["params"]["folds"] == 2
    # The model learned every photo: each is answered with its own colour.
    session, card, _ = load_version(registry, project, result.version, tmp_path)
    assert sorted(version["splits"]["train"]) == sorted(image["id"] for image in images)
    for image in images:
        pixels = to_tensor(decode_rgb(annotation.get_image_bytes(project, image["id"])), card.preprocess)
        assert card.labels[int(session.run(None, {"image": pixels[None]})[0].argmax())] == image["tags"][0]


def test_auto_cross_validates_every_candidate_the_budget_affords_and_keeps_the_cheapest_within_one_se(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path, tmp_path: Path) -> None:
    project = project_name("choose")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    upload_tagged(annotation, project, shape_images(SHAPES, 12, seed=5))

    # 36 images: every backbone plain and mirrored, each alone, with flip, and in ensembles, each on the
    # features and on their square roots; the MLP on the best linear candidate's features.
    result = run_training(config(project, cache_dir, int8=False), annotation, registry)
    version = registry.get_version(project, result.version)
    selection = version["params"]["selection"]
    rows = selection["candidates"]
    linear = [row["name"] for row in rows if row["head"] == "linear"]
    assert len(linear) == 28 and {"lite0 linear", "lite2 flip linear", "lite0+lite1+lite2 flip linear",
                                  "lite0 sqrt linear", "lite0+lite1+lite2 flip sqrt linear"} <= set(linear)
    assert [row["head"] for row in rows].count("mlp") == 1
    assert selection["folds"] == 5 and selection["repeats"] == 5 and selection["images"] == 36
    # A race: candidates clearly behind after the first repeat stop there; the rest run all five.
    finalists = [row for row in rows if not row["dropped_after_first_repeat"]]
    assert all(len(row["repeat_scores"]) == (5 if row in finalists else 1) for row in rows)
    best = max(finalists, key=lambda row: (row["score"], -row["cost"]))
    assert selection["best"] == best["name"]
    within = [row for row in finalists if row["score"] >= best["score"] - selection["standard_error"] - 1e-9]
    chosen = min(within, key=lambda row: (row["cost"], -row["score"]))
    assert selection["chosen"] == chosen["name"] and chosen["chosen"]
    for row in rows:
        assert row["within_one_se"] == (row in within)
    # The version is built on the choice and says so; its file preprocesses for its (largest) backbone.
    assert version["params"]["backbones"] == chosen["backbones"] and version["params"]["flip"] == chosen["flip"]
    assert version["params"]["sqrt"] == chosen["sqrt"]
    _, card, _ = load_version(registry, project, result.version, tmp_path)
    sizes = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
    size = max(sizes[b] for b in chosen["backbones"])
    assert card.preprocess.size == size
    # Six passes for choosing; a chosen ensemble's smaller members again as its file computes them (resized).
    resized = sum(sizes[b] != size for b in chosen["backbones"]) * (2 if chosen["flip"] else 1)
    assert len(selection["feature_passes"]) == 6
    assert result.report["features"] == {"computed": (6 + resized) * 36, "cached": 0}
    assert card.extra["backbones"] == chosen["backbones"] and card.extra["head"] == chosen["head"]

    # No budget: the cheapest backbone only (always computed), every feature from the cache now.
    cheapest = run_training(config(project, cache_dir, selection_budget=0, head="linear", int8=False), annotation,
                            registry)
    assert [row["name"] for row in registry.get_version(project, cheapest.version)["params"]["selection"][
        "candidates"]] == ["lite0 linear", "lite0 sqrt linear"]
    assert cheapest.report["features"] == {"computed": 0, "cached": 36}
    # A named backbone is not replaced; its flip and the MLP are still candidates.
    named = run_training(config(project, cache_dir, backbone="efficientnet-lite1", int8=False), annotation,
                         registry)
    names = [row["name"] for row in registry.get_version(project, named.version)["params"]["selection"]["candidates"]]
    assert set(names) >= {"lite1 linear", "lite1 flip linear"} and all(n.startswith("lite1") for n in names)
    assert registry.get_version(project, named.version)["params"]["backbones"] == ["efficientnet-lite1"]


def test_advanced_run_fine_tunes_keeps_the_best_epoch_and_adds_an_agreeing_int8_variant(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path, tmp_path: Path) -> None:
    project = project_name("colours")
    colours = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
    annotation.create_project(project, "multiclass", tags=list(colours))
    upload_tagged(annotation, project, colour_images(colours, 7, seed=3))
    result = run_training(config(project, cache_dir, mode="advanced", epochs=2, int8=True), annotation, registry)

    metrics = result.metrics
    # Epoch 0 is the starting point (the quick head on pretrained blocks), on validation only.
    assert [entry["epoch"] for entry in metrics["history"]] == [0, 1, 2]
    assert {"train_loss", "val_loss", "train_metric", "val_metric"} <= set(metrics["history"][1])
    version = registry.get_version(project, result.version)
    assert version["params"]["mode"] == "advanced" and version["params"]["best_epoch"] in (0, 1, 2)
    assert version["params"]["epochs_run"] == 2
    assert version["params"]["fine_tuned_from_block"] == 15
    run = registry.get_run(result.run_id)
    assert run["epochs"] == 2 and run["epoch"] == 2 and "val_loss" in run["metrics"]

    # Noisy colour fields are easy: INT8 must answer as fp32 does, and so is registered as a variant.
    assert metrics["int8"]["top1_agreement"] >= 0.99 and metrics["int8"]["registered"] is True
    assert result.variants == ["fp16", "int8"] and version["variants"]["int8"]["top1_agreement"] >= 0.99
    _, fp32_card, _ = load_version(registry, project, result.version, tmp_path)
    int8_session, int8_card, metadata = load_version(registry, project, result.version, tmp_path, variant="int8")
    assert int8_card == fp32_card and metadata["visiondock.precision"] == "int8"
    graph = onnx.load(str(tmp_path / f"{project}-{result.version}-int8.onnx")).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 50
    # The softmax stays in float: probabilities are not cut to steps of 1/255.
    red = decode_rgb(colour_images({"red": colours["red"]}, 1, seed=11)[0][1])
    probabilities = int8_session.run(None, {"image": to_tensor(red, int8_card.preprocess)[None]})[0]
    assert int(probabilities.argmax()) == int8_card.labels.index("red")
    assert not np.allclose(probabilities * 255, np.round(probabilities * 255), atol=1e-3)


def test_multilabel_run_chooses_a_threshold_per_tag(annotation: AnnotationClient, registry: RegistryClient,
                                                    cache_dir: Path, tmp_path: Path) -> None:
    project = project_name("scenes")
    annotation.create_project(project, "multilabel", tags=["sun", "leaf", "sea"])
    items = multilabel_images(36, seed=4)
    created = upload_unlabeled(annotation, project, [data for _, data in items])
    for image, (tags, _) in zip(created, items, strict=True):
        annotation.set_image_tags(project, image["id"], tags)
    result = run_training(config(project, cache_dir), annotation, registry)

    session, card, _ = load_version(registry, project, result.version, tmp_path)
    assert card.task == "multilabel" and set(card.thresholds) == {"leaf", "sea", "sun"}
    assert all(0.0 < value < 1.0 for value in card.thresholds.values())
    metrics = result.metrics
    assert {"micro_f1", "macro_f1", "mean_ap"} <= set(metrics)
    assert metrics["per_class"]["sun"]["threshold"] == card.thresholds["sun"]
    # Independent sigmoids: a scene with every marker can score high on all three.
    scenes = [data for _, data in multilabel_images(6, seed=9)]
    batch = np.stack([to_tensor(decode_rgb(data), card.preprocess) for data in scenes])
    probabilities = session.run(None, {"image": batch})[0]
    assert probabilities.shape == (6, 3) and not np.allclose(probabilities.sum(axis=1), 1.0)
    assert metrics["mean_ap"] > 0.6  # three plain markers: far above the ~0.4 of chance

    # The same seed trains the same model: same split, thresholds and held-out numbers.
    again = run_training(config(project, cache_dir), annotation, registry)
    first, second = (registry.get_version(project, v) for v in (result.version, again.version))
    assert first["splits"] == second["splits"] and again.metrics["thresholds"] == metrics["thresholds"]
    assert again.metrics["per_class"] == metrics["per_class"] and again.report["features"]["computed"] == 0


def test_face_preset_identifies_people_reports_photos_without_a_face_and_tunes_unknown(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path, tmp_path: Path) -> None:
    project = project_name("faces")
    people = face_images(5, 7, seed=5)
    strangers = [("unknown", data) for _, data in face_images(4, 2, seed=6, first=40)]
    no_face = [("person-0", data) for _, data in shape_images(["circle"], 2, seed=7, size=160)]
    annotation.create_project(project, "multiclass", tags=[*sorted({t for t, _ in people}), "unknown"])
    upload_tagged(annotation, project, people + strangers + no_face)
    result = run_training(config(project, cache_dir, task_preset="face"), annotation, registry)

    assert result.task == "face"
    reported = {item["id"] for item in result.report["no_face"]}
    shapes = {image["id"] for image in annotation.list_images(project) if image["filename"].startswith("person-0")}
    assert len(reported) >= 2  # the two drawings at least; the detector may miss a real face too
    metrics = result.metrics
    assert isinstance(metrics["test_no_face_count"], int) and metrics["test_unknown_count"] >= 1
    assert metrics["threshold"]["name"] == "unknown"
    assert metrics["identification_rate"] is not None and metrics["accuracy"] >= 0.6
    version = registry.get_version(project, result.version)
    assert version["task"] == "face" and "unknown" not in version["labels"]
    assert set(version["splits"]["train"]).isdisjoint({i for i in reported})
    _, card, _ = load_version(registry, project, result.version, tmp_path)
    assert card.task == "face" and set(card.thresholds) == {"unknown"}
    assert card.extra["face_detector"] == "opencv-haar-frontalface-default" and card.extra["face_margin"] == 0.2
    assert card.extra["decode"] == "full"
    del shapes


def test_detection_run_exports_boxes_and_scores_that_match_torch(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path, tmp_path: Path) -> None:
    project = project_name("boxes")
    annotation.create_project(project, "detection", tags=["disc", "block"])
    rng = np.random.default_rng(8)
    scenes = [box_scene(rng) for _ in range(18)]
    created = upload_unlabeled(annotation, project, [jpeg(image) for image, _ in scenes])
    for image, (_, regions) in zip(created, scenes, strict=True):
        annotation.set_image_regions(project, image["id"], regions)
    reports: list[dict] = []
    original_update = registry.update_run

    def record(run_id: str, **changes: object) -> dict:
        reports.append(changes)
        return original_update(run_id, **changes)

    registry.update_run = record  # type: ignore[method-assign]
    try:
        result = run_training(config(project, cache_dir, epochs=2, input_size=64, int8=True), annotation,
                              registry)
    finally:
        del registry.update_run

    assert result.task == "detection"
    metrics = result.metrics
    assert {"map_50", "map_50_95", "per_class", "history"} <= set(metrics)
    parity = metrics["export_parity"]
    assert parity["max_abs_diff_scores"] < 1e-3 and parity["detection_agreement"] >= 0.99
    session, card, _ = load_version(registry, project, result.version, tmp_path)
    assert card.task == "detection" and card.output_names == ["boxes", "scores"]
    assert card.preprocess.policy == "stretch" and card.preprocess.size == 64
    assert {"score", "nms_iou"} <= set(card.thresholds)
    boxes, scores = session.run(None, {"image": np.zeros((1, 3, 64, 64), np.float32)})
    assert boxes.shape[-1] == 4 and scores.shape[-1] == 2 and boxes.shape[1] == scores.shape[1]
    # A few validation images would choose nothing well: they train, and the threshold is the default, said so.
    assert metrics["validation_count"] == 0 and metrics["train_count"] + metrics["test_count"] == 18
    selection = metrics["threshold_selection"]
    assert selection["method"] == "default" and selection["minimum_images"] == 30
    assert "fewer than 30 images" in selection["note"] and card.thresholds["score"] == 0.5
    # The estimate: mAP on the test images with a 95 % bootstrap interval and what it rests on.
    estimate = metrics["estimate"]
    assert estimate["map_50"]["value"] == pytest.approx(metrics["map_50"], abs=1e-4)
    assert estimate["map_50"]["low"] <= estimate["map_50"]["value"] <= estimate["map_50"]["high"]
    assert (estimate["images"], estimate["source"], estimate["confidence"]) == (metrics["test_count"], "held-out",
                                                                                0.95)
    assert (estimate["metric"], estimate["value"]) == ("mAP@0.5", estimate["map_50"]["value"])
    # Per class: AP at both IoU criteria, box counts, PR curves and the error breakdown, whose boxes add up.
    for label in ("disc", "block"):
        row, errors = metrics["per_class"][label], metrics["errors"]["per_class"][label]
        assert {"ap_50", "ap_50_95", "box_count", "precision", "recall", "f1"} <= set(row)
        assert set(metrics["pr_curves"][label]) == {"precision", "recall", "threshold"}
        assert errors["boxes"] == row["box_count"] == (errors["found"] + errors["wrong_class"] +
                                                       errors["mislocated"] + errors["missed"])
    # Variants are judged on every labeled image by the mAP@0.5 difference and its interval.
    for variant in ("int8", "fp16"):
        checked = metrics[variant]
        difference = checked["map_50_difference"]
        assert checked["checked"] == difference["image_count"] == 18 and checked["checked_on"] == "all labeled images"
        assert checked["registered"] == (checked["map_50_drop"] <= 0.01 and difference["high"] >= 0) == \
            (variant in result.variants)
        assert checked[f"map_50_{variant}"] == pytest.approx(checked["map_50_fp32"] - checked["map_50_drop"])
    # Quick mode exports the evaluated detector; every epoch's report said how long the run had left.
    params = registry.get_version(project, result.version)["params"]
    assert metrics["refit"] is False and params["epochs_run"] == 2 == len(metrics["history"])
    epochs = [r for r in reports if r.get("epoch") is not None]
    assert [r["epoch"] for r in epochs] == [1, 2] and all(r["remaining_seconds"] >= 0 for r in epochs)


def test_advanced_detection_refits_on_every_image_for_the_whole_schedule(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path) -> None:
    project = project_name("boxes-advanced")
    annotation.create_project(project, "detection", tags=["disc", "block"])
    rng = np.random.default_rng(9)
    scenes = [box_scene(rng) for _ in range(14)]
    created = upload_unlabeled(annotation, project, [jpeg(image) for image, _ in scenes])
    for image, (_, regions) in zip(created, scenes, strict=True):
        annotation.set_image_regions(project, image["id"], regions)
    result = run_training(config(project, cache_dir, mode="advanced", epochs=2, input_size=64, int8=False,
                                 fp16=False), annotation, registry)
    params = registry.get_version(project, result.version)["params"]
    assert result.metrics["refit"] == {"images": 14} and params["refit_epochs"] == 2 and params["best_epoch"] <= 2
    assert len(result.metrics["history"]) == params["epochs_run"]  # the curves are the evaluated training's


def test_data_that_cannot_train_fails_the_run_with_the_reason_and_registers_nothing(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path) -> None:
    empty = project_name("empty")
    annotation.create_project(empty, "multiclass", tags=["a", "b"])
    upload_unlabeled(annotation, empty, [data for _, data in shape_images(["circle"], 2, seed=1)])
    with pytest.raises(TrainingDataError, match="no labeled images"):
        run_training(config(empty, cache_dir), annotation, registry)

    lonely = project_name("lonely")
    annotation.create_project(lonely, "multiclass", tags=list(SHAPES))
    upload_tagged(annotation, lonely, shape_images(SHAPES[:2], 3, seed=1) + shape_images(SHAPES[2:], 1, seed=2))
    with pytest.raises(TrainingDataError, match="'triangle' has 1"):
        run_training(config(lonely, cache_dir), annotation, registry)

    untrained = project_name("untrained")
    annotation.create_project(untrained, "multiclass", tags=list(SHAPES[:2]))
    upload_tagged(annotation, untrained, shape_images(SHAPES[:1], 3, seed=3))
    upload_tagged(annotation, untrained, shape_images(SHAPES[1:2], 2, seed=4), split="test")
    with pytest.raises(TrainingDataError, match="no image of 'square' is on the training side"):
        run_training(config(untrained, cache_dir), annotation, registry)

    for model, reason in ((empty, "no labeled images"), (lonely, "'triangle' has 1"),
                          (untrained, "explicit test split")):
        runs = registry.list_runs(model=model)
        assert len(runs) == 1 and runs[0]["status"] == "failed" and reason in runs[0]["error"]
        with pytest.raises(ServiceError) as missing:
            registry.list_versions(model)
        assert missing.value.status == 404
    assert json.dumps(runs[0]["report"])  # the report is stored with the failure


def test_a_variant_that_cannot_be_made_leaves_the_version_registered_without_it(
        annotation: AnnotationClient, registry: RegistryClient, cache_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A graph the float16 converter cannot take: the trained model is still registered, with the reason.
    from services.trainer.tasks import base

    def refuse(fp32_path: Path, fp16_path: Path) -> Path:
        raise ValueError("an operator the float16 conversion does not know")

    monkeypatch.setattr(base, "convert_fp16", refuse)
    project = project_name("no-fp16")
    annotation.create_project(project, "multiclass", tags=SHAPES)
    upload_tagged(annotation, project, shape_images(SHAPES, 8, seed=5))
    result = run_training(config(project, cache_dir), annotation, registry)
    assert registry.get_run(result.run_id)["status"] == "succeeded"
    assert set(registry.get_version(project, result.version)["variants"]) == {"int8"}
    reason = "ValueError: an operator the float16 conversion does not know"
    assert result.metrics["fp16"] == {"accepted": False, "registered": False, "error": reason}
    assert f"the fp16 variant could not be made ({reason}); the version has none" in result.report["warnings"]
