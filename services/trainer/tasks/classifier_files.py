"""A classifier's exported files: the fp32 file put together from frozen backbones and the head
(quick mode, `compose.py`), its check, the INT8 variant (calibration images, quantized backbones
cached per calibration set) and the verdict on each variant.

INT8 is judged by accuracy, not only by agreement with fp32: in quick mode on the same out-of-fold
predictions as fp32 (the fold heads on the INT8 backbones' features), in advanced mode on every
labeled image; it is registered when the interval of its difference from fp32 reaches zero and the
measured drop is small (`keeps`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from visiondock.modelcard import ModelCard
from visiondock.vocabulary import INT8

from ..cache_budget import mark_used
from ..compose import compose_classifier
from ..crossval import paired_difference, predict_out_of_fold
from ..export import ParityError, export_graph, run_session, session, top1_agreement, write_card
from ..feature_sets import int8_recipe_name, pass_spec
from ..features import CACHE_FORMAT, atomic_write
from ..heads import HeadOutputs
from ..quantize import CLASSIFIER_INT8, MAX_INT8_DROP, MIN_TOP1_AGREEMENT, quantize_int8, save_variant
from ..selection import FeaturePass
from .base import ExportInputs, Validation, input_tensors
from .classifier_data import ClassificationData, FittedClassifier
from .quick_classification import feature_matrix

if TYPE_CHECKING:
    from .classification import ClassificationTask

log = logging.getLogger(__name__)
# The name the quantized backbone's output and the float head's input share in the INT8 variant.
FEATURES_NAME = "features"


def calibration_images(task: ClassificationTask, data: ClassificationData) -> list[int]:
    """The training images with the lowest SHA-256: a fair sample that stays the same when images are
    added (a new one enters only if its hash is lower), so the quantized backbone stays cached."""
    pool = task.mode.calibration_pool(data)
    return sorted(pool, key=lambda i: data.records[i].id)[:CLASSIFIER_INT8.calibration_images]


def _members(model: FittedClassifier) -> list[FeaturePass]:
    """The served candidate's member passes (plain views; the file mirrors for itself)."""
    assert model.candidate is not None
    return [p for p in model.candidate.passes(served=True) if not p.mirrored]


def _head_graph(task: ClassificationTask, data: ClassificationData, model: FittedClassifier,
                exported: ExportInputs, workdir: str) -> Path:
    assert model.head is not None
    return export_graph(HeadOutputs(model.head, multilabel=task.multilabel), torch.zeros(1, data.feature_dim),
                        Path(workdir) / "head.onnx", input_name=FEATURES_NAME, output_names=exported.output_names)


def compose_file(task: ClassificationTask, data: ClassificationData, model: FittedClassifier,
                 exported: ExportInputs, card: ModelCard, path: Path) -> Path:
    """Quick mode's fp32 file: the chosen candidate's frozen backbone graphs under its head."""
    assert data.sets is not None and model.candidate is not None
    with tempfile.TemporaryDirectory(prefix="visiondock-export-") as workdir:
        head = _head_graph(task, data, model, exported, workdir)
        members = [data.sets.graph(p) for p in _members(model)]
        compose_classifier(members, head, path, flip=model.candidate.flip, root=model.candidate.root,
                           input_name=card.input_name)
    write_card(path, card)
    return path


def check_composed(exported: ExportInputs, path: Path, images: int, threads: int) -> dict[str, Any]:
    """Quick mode: the file against the head on the features it was fitted and judged on."""
    assert exported.check_expected is not None
    inputs, expected = exported.check_inputs[:images], exported.check_expected[:images]
    if not len(inputs):
        raise ParityError("no images to check the exported model on; nothing was registered")
    actual = run_session(session(path, threads), inputs)[0]
    max_abs = float(np.abs(expected - actual).max())
    agreement = top1_agreement(expected, actual)
    if max_abs > 1e-3 or agreement < 1.0:
        raise ParityError(f"the exported file differs from the model it was judged as: max |diff| {max_abs:.2e}, "
                          f"top-1 agreement {agreement:.3f}; nothing was registered")
    return {"max_abs_diff": max_abs, "top1_agreement": agreement, "checked": len(inputs),
            "compared_with": "the head on the cached features"}


def _int8_member(task: ClassificationTask, data: ClassificationData, feature_pass: FeaturePass) -> Path:
    """The pass's quantized graph, from the cache or quantized now (and kept there)."""
    assert data.sets is not None
    report = task.run.report
    chosen = calibration_images(task, data)
    spec = pass_spec(feature_pass)
    recipe = {"pass": [feature_pass.backbone, feature_pass.input_size], "preprocess": spec.to_json(),
              "crop": data.sets.crop, "calibration": [data.records[i].id for i in chosen],
              "settings": CLASSIFIER_INT8.recipe(), "onnxruntime": ort.__version__, "torch": torch.__version__,
              "format": CACHE_FORMAT}
    target = task.run.cache_dir / "models" / int8_recipe_name(feature_pass, recipe)
    if target.exists():
        mark_used(target)
        report.setdefault("int8_backbone", "cached")
        log.info("INT8 backbone from the cache (%s)", target.name)
        return target
    report["int8_backbone"] = "quantized"
    log.info("quantizing the %s backbone on %d images", feature_pass.backbone, len(chosen))
    calibration = input_tensors(data.sets.inputs(spec).present([data.records[i] for i in chosen]), spec)
    fp32 = data.sets.graph(feature_pass)
    atomic_write(target, lambda path: quantize_int8(fp32, path, calibration, float_feeding_layer=False,
                                                     settings=CLASSIFIER_INT8))
    return target


def compose_int8(task: ClassificationTask, data: ClassificationData, model: FittedClassifier,
                 exported: ExportInputs, fp32_path: Path, int8_path: Path) -> Path:
    """Quick mode's INT8 variant: the quantized frozen backbones (cached) under the float head."""
    assert model.candidate is not None
    members = [_int8_member(task, data, p) for p in _members(model)]
    with tempfile.TemporaryDirectory(prefix="visiondock-int8-") as workdir:
        head = _head_graph(task, data, model, exported, workdir)
        composed = compose_classifier(members, head, Path(workdir) / "composed.onnx", flip=model.candidate.flip,
                                      root=model.candidate.root)
        save_variant(onnx.load(str(composed)), onnx.load(str(fp32_path)), int8_path, INT8)
    return int8_path


def judge_variant(task: ClassificationTask, data: ClassificationData, exported: ExportInputs,
                  validation: Validation, fp32_path: Path, variant_path: Path, variant: str) -> dict[str, Any]:
    """fp16: its agreement with fp32 decides; INT8: whether it keeps the accuracy."""
    model = exported.fitted
    assert isinstance(model, FittedClassifier)
    agreement = _check_agreement(task, data, exported, validation, fp32_path, variant_path)
    if variant != INT8:
        return agreement
    judged = _int8_out_of_fold(task, data, model, validation) if model.cv is not None else \
        _int8_on_labeled(task, data, validation, fp32_path, variant_path)
    return {**agreement, **judged, "accepted": judged["keeps_accuracy"]}


def _check_agreement(task: ClassificationTask, data: ClassificationData, exported: ExportInputs,
                     validation: Validation, fp32_path: Path, variant_path: Path) -> dict[str, Any]:
    """How the variant file answers against fp32 on the check images (fp16: what decides)."""
    threads = task.options.cpu_threads
    fp32 = exported.check_expected
    if fp32 is None:
        fp32 = run_session(session(fp32_path, threads), exported.check_inputs)[0]
    other = run_session(session(variant_path, threads), exported.check_inputs)[0]
    agreement = top1_agreement(fp32, other)
    result = {"top1_agreement": agreement, "max_abs_diff": float(np.abs(fp32 - other).max()),
              "checked": len(exported.check_inputs), "checked_on": exported.check_source,
              "accepted": agreement >= MIN_TOP1_AGREEMENT, "required_top1_agreement": MIN_TOP1_AGREEMENT}
    if task.multilabel:
        cut = np.array([validation.thresholds[label] for label in data.labels])
        result["tag_set_agreement"] = float(((fp32 >= cut) == (other >= cut)).all(axis=1).mean())
    return result


def keeps(fp32_right: np.ndarray, int8_right: np.ndarray, judged_on: str) -> dict[str, Any]:
    """INT8 keeps the accuracy when the 95 % interval of its difference from fp32 reaches zero and the
    measured drop is at most MAX_INT8_DROP (a few images of a small set must not hide a real loss)."""
    difference = paired_difference(fp32_right, int8_right)
    kept = difference["interval"][1] >= 0 and difference["difference"] >= -MAX_INT8_DROP
    return {"keeps_accuracy": bool(kept), "accuracy_fp32": round(float(fp32_right.mean()), 6),
            "accuracy_int8": round(float(int8_right.mean()), 6), "difference": difference["difference"],
            "difference_interval": difference["interval"], "images": difference["images"],
            "gained": difference["gained"], "lost": difference["lost"], "max_drop": MAX_INT8_DROP,
            "judged_on": judged_on, "calibration": CLASSIFIER_INT8.recipe()}


def _int8_out_of_fold(task: ClassificationTask, data: ClassificationData, model: FittedClassifier,
                      validation: Validation) -> dict[str, Any]:
    """The INT8 backbones' features of every cross-validated image through the same fold heads:
    out-of-fold accuracy of INT8 against fp32 on the same images."""
    assert model.cv is not None and data.plan is not None and data.sets is not None
    sets = data.sets
    cv = data.cv
    served = model.candidate.passes(served=True) if model.candidate else []
    records = [data.records[i] for i in cv]
    features = {p: sets.compute_int8(p, _int8_member(task, data, FeaturePass(p.backbone, False, p.input_size)),
                                     records) for p in served}
    assert model.candidate is not None
    int8 = predict_out_of_fold(model.cv.heads, data.plan, model.candidate.transform(feature_matrix(data, served, cv,
                                                                                                 features)),
                               multilabel=task.multilabel).mean(axis=0)
    fp32 = model.cv.probabilities
    counted = set(task.scored(data, cv))
    scored = [i for i, position in enumerate(cv) if position in counted]
    positions = [cv[i] for i in scored]
    fp32_right = task.right(data, positions, fp32[scored], validation.thresholds)
    int8_right = task.right(data, positions, int8[scored], validation.thresholds)
    result = keeps(fp32_right, int8_right, f"out-of-fold predictions of {len(scored)} images")
    result["out_of_fold_top1_agreement"] = round(top1_agreement(fp32, int8), 6)
    return result


def _int8_on_labeled(task: ClassificationTask, data: ClassificationData, validation: Validation, fp32_path: Path,
                     variant_path: Path) -> dict[str, Any]:
    """Advanced mode: both files on every labeled image, judged against the labels."""
    positions = task.scored(data, sorted({*data.split.train, *data.split.validation, *data.test}))
    images = data.images_of(positions, "INT8 check")
    positions = positions[:len(images)]
    inputs = input_tensors(images, data.spec)
    threads = task.options.cpu_threads
    fp32 = run_session(session(fp32_path, threads), inputs)[0]
    int8 = run_session(session(variant_path, threads), inputs)[0]
    result = keeps(task.right(data, positions, fp32, validation.thresholds),
                   task.right(data, positions, int8, validation.thresholds),
                   f"every labeled image ({len(positions)}; most were trained on)")
    result["labeled_top1_agreement"] = round(top1_agreement(fp32, int8), 6)
    return result
