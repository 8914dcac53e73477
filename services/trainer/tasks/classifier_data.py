"""What a classification task prepares and fits, shared by its two modes (quick: cross-validated,
`quick_classification.py`; advanced: held out and fine-tuned, `held_out_classification.py`) and by
its exported files (`classifier_files.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from visiondock.preprocess import PreprocessSpec

from ..backbone import Top
from ..crossval import CrossValidated, FoldPlan
from ..feature_sets import FeatureSets
from ..features import FrozenRunner
from ..image_inputs import ImageInputs
from ..selection import Candidate, FeaturePass, Selection
from .base import Fitted, Prepared

# The exported file is checked on at most this many images.
CHECK_IMAGES = 256


@dataclass
class ClassificationData(Prepared):
    # Per image: the class index (-1: `unknown`, face preset), or a row of 0/1 per tag (multilabel).
    targets: np.ndarray
    spec: PreprocessSpec  # the exported model's preprocessing
    inputs: ImageInputs  # images decoded for `spec`
    features: dict[str, np.ndarray]  # by image id: the model's features (quick: the chosen candidate's)
    feature_dim: int
    test: list[int]  # the test images that have an input (face preset: a face)
    # Quick mode: the images cross-validated (every image with an input outside `test`), their folds,
    # the backbone passes computed, near-duplicate groups (per image) and the report on them.
    cv: list[int] = field(default_factory=list)
    plan: FoldPlan | None = None
    passes: list[FeaturePass] = field(default_factory=list)
    sets: FeatureSets | None = None
    groups: np.ndarray | None = None
    duplicates: dict[str, Any] = field(default_factory=dict)
    kept_out: list[int] = field(default_factory=list)  # test images with a near-duplicate trained on
    no_face: list[int] = field(default_factory=list)  # face preset: images the detector found no face in
    no_face_test: list[int] = field(default_factory=list)  # those of them in the test part

    def features_of(self, indices: Sequence[int], features: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The images' features: the model's, or those of `features` (another feature set)."""
        if not len(indices):
            return np.zeros((0, self.feature_dim), np.float32)
        vectors = self.features if features is None else features
        return np.stack([vectors[self.records[i].id] for i in indices])

    def images_of(self, indices: Sequence[int], desc: str = "download images") -> list[Image.Image]:
        return self.inputs.present([self.records[i] for i in indices], desc)


@dataclass
class FittedClassifier(Fitted):
    backbone: nn.Module | None = None  # advanced: the pretrained model with its upper blocks fine-tuned
    head: nn.Module | None = None  # on the model's features (quick: the raw features of the chosen candidate)
    # Advanced mode: the fine-tuned blocks, and the frozen trunk below them that feeds them.
    top: Top | None = None
    trunk: FrozenRunner | None = None
    head_epochs: int | None = None  # MLP: the epoch kept, what a refit trains for
    # Quick mode: the chosen candidate and its cross-validation (out-of-fold predictions, fold heads).
    candidate: Candidate | None = None
    cv: CrossValidated | None = None
    selection: Selection | None = None
