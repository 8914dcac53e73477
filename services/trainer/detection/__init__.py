"""Object detection: an FCOS-style detector on a pretrained EfficientNet-Lite backbone.

The trainer calls `fit_detector`, `evaluate_detector` and exports
`FittedDetector.export_module()`: input "image" [N, 3, S, S] (normalized per
`FittedDetector.preprocess`, the whole frame stretched to S x S), outputs "boxes"
[N, A, 4] (x1, y1, x2, y2 as fractions of the input) and "scores" [N, A, C]
(per-class probabilities), the contract of `visiondock.postprocess.decode_detections`.
"""

from .augment import AugmentOptions
from .metrics import detection_metrics
from .samples import DetectionSample
from .training import (
    EVAL_SCORE_THRESHOLD,
    INPUT_NAME,
    OUTPUT_NAMES,
    DetectorOptions,
    FittedDetector,
    evaluate_detector,
    fit_detector,
)

__all__ = [
    "EVAL_SCORE_THRESHOLD",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "AugmentOptions",
    "DetectionSample",
    "DetectorOptions",
    "FittedDetector",
    "detection_metrics",
    "evaluate_detector",
    "fit_detector",
]
