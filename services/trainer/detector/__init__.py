"""Object detection: an FCOS-style detector on a pretrained EfficientNet-Lite backbone.

The detection task calls `fit_detector`, `choose_score_threshold`, `evaluate_detector`
and exports `FittedDetector.export_module()`: input "image" [N, 3, S, S] (normalized
per `FittedDetector.preprocess`, the whole frame stretched to S x S), outputs "boxes"
[N, A, 4] (x1, y1, x2, y2 as fractions of the input) and "scores" [N, A, C]
(per-class probabilities), the contract of `visiondock.postprocess.decode_detections`.
Inside: `model.py` (backbone features, pyramid, head, the exported graph), `loss.py`
(FCOS targets and losses), `augment.py` (box-aware views), `samples.py` (an annotated
image), `training.py` (fit and apply).
"""

from .augment import AugmentOptions
from .samples import DetectionSample
from .training import (
    EVAL_SCORE_THRESHOLD,
    INPUT_NAME,
    OUTPUT_NAMES,
    DetectorOptions,
    FittedDetector,
    choose_score_threshold,
    detection_result,
    evaluate_detector,
    fit_detector,
    image_results,
)

__all__ = [
    "EVAL_SCORE_THRESHOLD",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "AugmentOptions",
    "DetectionSample",
    "DetectorOptions",
    "FittedDetector",
    "choose_score_threshold",
    "detection_result",
    "evaluate_detector",
    "fit_detector",
    "image_results",
]
