"""Advanced mode of the classification tasks: a held-out split, then fine-tuning.

The images are split three ways (train, validation, test; `splits.py`); the head is fitted on the
frozen backbone's features as quick mode would, then the backbone's upper blocks are fine-tuned
with it on augmented images, early stopping on the validation loss (`finetune.py`). Thresholds are
chosen on the validation images, metrics and the estimate measured on the test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from visiondock.preprocess import to_tensor
from visiondock.vocabulary import ADVANCED, AUTO, HELD_OUT

from ..backbone import Top, Trunk, backbone_spec, load_pretrained, top_start
from ..crossval import estimate
from ..data import ImageRecord, TrainingDataError
from ..feature_sets import pass_spec
from ..features import CACHE_FORMAT, FrozenRunner, run_batched
from ..finetune import FineTuneOptions, fine_tune
from ..heads import fit_head
from ..selection import FeaturePass
from ..splits import stratified_split
from .base import Validation
from .classifier_data import CHECK_IMAGES, ClassificationData, FittedClassifier

if TYPE_CHECKING:
    from .classification import ClassificationTask


def trunk_maps(data: ClassificationData, trunk: FrozenRunner, indices: Sequence[int], desc: str, *,
               progress: bool) -> np.ndarray:
    """The frozen trunk's feature maps of the images: what the fine-tuned blocks start from."""
    images = data.images_of(indices)
    if not images:
        return np.zeros((0,), dtype=np.float32)
    return run_batched(trunk, images, lambda img: to_tensor(img, data.spec), desc=desc, progress=progress)


class HeldOutClassification:
    def __init__(self, task: ClassificationTask) -> None:
        self.task = task
        self.options = task.options

    def prepare(self, records: Sequence[ImageRecord]) -> ClassificationData:
        task, options = self.task, self.options
        sets = task.feature_sets()
        feature_pass = FeaturePass(task.backbone)
        sets.compute(feature_pass, records)
        spec = pass_spec(feature_pass)
        inputs = sets.inputs(spec)
        inputs.get(records)  # fine-tuning needs every image's pixels
        usable = task.usable(records)
        labels, targets = task.labels_and_targets(usable)
        split = stratified_split(task.strata(usable), [r.split for r in usable], test_fraction=options.test_fraction,
                                 validation_fraction=options.validation_fraction, seed=options.seed,
                                 never_train=task.never_train())
        data = ClassificationData(labels=labels, records=usable, split=split, targets=targets, spec=spec,
                                  inputs=inputs, features=sets.features[feature_pass],
                                  feature_dim=backbone_spec(task.backbone).feature_dim, test=[], sets=sets,
                                  no_face=[i for i, r in enumerate(usable) if not inputs.has_input(r)])
        data.no_face_test = [i for i in data.no_face if i in set(split.test)]
        task.report_no_face(data)
        has = set(range(len(usable))) - set(data.no_face)
        split.train = [i for i in split.train if i in has and (task.multilabel or targets[i] >= 0)]
        split.validation = [i for i in split.validation if i in has]
        data.test = [i for i in split.test if i in has]
        task.require_every_label_trained(data, split.train)
        if not data.test:
            raise TrainingDataError("no images left for the held-out test split; label more images")
        if options.backbone == AUTO or options.head == AUTO:
            task.run.report["selection"] = {"backbone": task.backbone, "head": task.head,
                                            "skipped": f"choosing is for quick mode; {options.mode} mode "
                                                       "fine-tunes the default"}
        return data

    def fit(self, data: ClassificationData) -> FittedClassifier:
        task, options = self.task, self.options
        train, validation = data.split.train, task.known(data, data.split.validation)
        fit = fit_head(data.features_of(train), data.targets[train], data.features_of(validation),
                       data.targets[validation], kind=task.head, num_outputs=len(data.labels),
                       multilabel=task.multilabel, seed=options.seed, weight_decay=options.weight_decay)
        model = FittedClassifier(history=fit.history, params={"backbone": task.backbone, "head": task.head,
                                                              "weight_decay": fit.weight_decay},
                                 backbone=load_pretrained(task.backbone), head=fit.head, head_epochs=fit.epochs)
        if options.mode == ADVANCED:
            self._fine_tune(data, model, train, validation)
        model.params |= {"preprocess": data.spec.to_json(), "feature_dim": data.feature_dim}
        return model

    def _fine_tune(self, data: ClassificationData, model: FittedClassifier, train: list[int],
                   validation: list[int]) -> None:
        """Fine-tune the backbone's upper blocks and the head in place, starting from the quick head."""
        assert model.backbone is not None and model.head is not None
        task, options = self.task, self.options
        start = top_start(model.backbone, options.fine_tune_stages)
        path = task.run.cache_dir / "models" / f"{task.backbone}-trunk{start}-{data.spec.size}-f{CACHE_FORMAT}.onnx"
        trunk = FrozenRunner(lambda: Trunk(load_pretrained(task.backbone), start), input_size=data.spec.size,
                             threads=options.cpu_threads, onnx_path=path)
        top = Top(model.backbone, start)
        if trunk.device is not None:
            top.to(trunk.device)
            model.head.to(trunk.device)
        settings = FineTuneOptions(**options.chosen("epochs", "batch_size", "learning_rate"), augment=task.augment)
        train_images = data.images_of(train)
        validation_maps = trunk_maps(data, trunk, validation, "validation maps", progress=options.progress)
        tuned = fine_tune(top, model.head, trunk, train_images, data.targets[train], validation_maps,
                          data.targets[validation], spec=data.spec, multilabel=task.multilabel, options=settings,
                          seed=options.seed, on_epoch=task.run.steps.epoch, progress=options.progress)
        model.head = tuned.head.cpu()
        top.cpu()
        model.backbone.cpu()
        model.top, model.trunk, model.history = top, trunk, tuned.history
        augment = settings.augment
        model.params |= {"fine_tuned_from_block": start, "epochs_run": tuned.epochs_run,
                         "best_epoch": tuned.best_epoch, "learning_rate": settings.learning_rate,
                         "batch_size": settings.batch_size,
                         "augment": {"min_area": augment.min_area, "flip": augment.flip, "jitter": augment.jitter}}

    def validate(self, data: ClassificationData, model: FittedClassifier) -> Validation:
        task = self.task
        validation_images = data.split.validation
        val_probs = task.probabilities(data, model, validation_images)
        test_probs = task.probabilities(data, model, data.test)
        validation = task.measure(data, (validation_images, val_probs), (data.test, test_probs), "validation")
        validation.metrics["evaluation"] = {"method": HELD_OUT, "test_images": len(data.test)}
        judged = task.scored(data, data.test)
        rows = [data.test.index(i) for i in judged]
        validation.metrics["estimate"] = estimate(
            task.right(data, judged, test_probs[rows], validation.thresholds), source="held-out",
            metric=task.metric_name)
        return validation

    def refit(self, data: ClassificationData, model: FittedClassifier) -> FittedClassifier | None:
        return None  # the fine-tuned model stays as validated

    def check_images(self, data: ClassificationData) -> tuple[str, list[int]]:
        source, check = next((name, part) for name, part in (("validation", data.split.validation),
                                                             ("test", data.test), ("training", data.split.train))
                             if part or name == "training")
        return source, check[:CHECK_IMAGES]

    def calibration_pool(self, data: ClassificationData) -> list[int]:
        return data.split.train
