"""Metrics computed from one accumulated confusion matrix: classification and segmentation."""

from neuralab.metrics.classification import (
    accuracy,
    class_counts,
    classification_report,
    macro_averages,
    most_confused,
    per_class_metrics,
)
from neuralab.metrics.confusion import ConfusionMatrix
from neuralab.metrics.segmentation import (
    absent_classes,
    mean_iou,
    per_class_dice,
    per_class_iou,
    pixel_accuracy,
    segmentation_report,
)

__all__ = [
    "ConfusionMatrix",
    "absent_classes",
    "accuracy",
    "class_counts",
    "classification_report",
    "macro_averages",
    "mean_iou",
    "most_confused",
    "per_class_dice",
    "per_class_iou",
    "per_class_metrics",
    "pixel_accuracy",
    "segmentation_report",
]
