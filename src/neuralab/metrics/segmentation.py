"""Semantic segmentation metrics from one confusion matrix accumulated over a whole evaluation set.

Per-class IoU is TP / (TP + FP + FN) and Dice is 2TP / (2TP + FP + FN), both in [0, 1]. A class
absent from both the ground truth and the predictions of the whole set makes both 0/0: it is
reported as None, listed under "absent" and left out of the means, never NaN or a silent 0.0.
"""

from neuralab.metrics.classification import (
    Confusion,
    accuracy,
    class_counts,
    mean_of_defined,
    ratio_or_none,
)

# Class index treated as background by the mean IoU that leaves it out.
BACKGROUND_CLASS = 0


def pixel_accuracy(confusion: Confusion) -> float | None:
    """Return the fraction of counted pixels labelled correctly, or None if none was counted."""
    return accuracy(confusion)


def per_class_iou(confusion: Confusion) -> list[float | None]:
    """Return TP / (TP + FP + FN) for each class, or None for a class absent from both masks."""
    counts = class_counts(confusion)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return [ratio_or_none(tp[c], tp[c] + fp[c] + fn[c]) for c in range(len(tp))]


def per_class_dice(confusion: Confusion) -> list[float | None]:
    """Return 2TP / (2TP + FP + FN) for each class (the per-class F1), None for an absent class."""
    counts = class_counts(confusion)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return [ratio_or_none(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(len(tp))]


def absent_classes(confusion: Confusion) -> list[int]:
    """Return the classes that occur in neither the ground truth nor the predictions."""
    counts = class_counts(confusion)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return [c for c in range(len(tp)) if tp[c] + fp[c] + fn[c] == 0]


def mean_iou(confusion: Confusion, include_background: bool = True) -> float | None:
    """Return the mean IoU over present classes, optionally leaving out class BACKGROUND_CLASS.

    None when no class is left to average, for example only background without it.
    """
    iou = per_class_iou(confusion)
    if not include_background:
        iou = [value for c, value in enumerate(iou) if c != BACKGROUND_CLASS]
    return mean_of_defined(iou)


def segmentation_report(confusion: Confusion) -> dict:
    """Return every segmentation metric in one JSON-ready dict.

    Keys: "num_pixels", "pixel_accuracy", "iou" and "dice" (per-class lists), "mean_iou",
    "mean_iou_without_background", "mean_dice" and "absent" (class indices).
    """
    counts = class_counts(confusion)
    dice = per_class_dice(confusion)
    return {
        "num_pixels": sum(counts["support"]),
        "pixel_accuracy": pixel_accuracy(confusion),
        "iou": per_class_iou(confusion),
        "dice": dice,
        "mean_iou": mean_iou(confusion, include_background=True),
        "mean_iou_without_background": mean_iou(confusion, include_background=False),
        "mean_dice": mean_of_defined(dice),
        "absent": absent_classes(confusion),
    }
