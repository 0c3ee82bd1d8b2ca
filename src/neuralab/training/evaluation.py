"""Test-set evaluation of a trained classifier or segmenter: loss, accuracy and the confusion-matrix metrics."""

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from neuralab.metrics import ConfusionMatrix, classification_report, segmentation_report
from neuralab.metrics.confusion import as_counts
from neuralab.training.engine import Trainer


def evaluate_classifier(trainer: Trainer, loader: Iterable[tuple[Tensor, Tensor]],
                        classes: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Return test loss, accuracy, per-class precision/recall/F1 and the confusion matrix."""
    confusion = ConfusionMatrix(max(len(classes), 2))
    result = trainer.evaluate(loader, confusion=confusion)
    confusion.reduce_()
    report = classification_report(confusion)
    return {
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        "test_samples": result.samples,
        "classes": list(classes),
        "per_class": report["per_class"],
        "macro": report["macro"],
        "most_confused": report["most_confused"],
        "confusion_matrix": as_counts(confusion),
    }


def evaluate_segmenter(trainer: Trainer, loader: Iterable[tuple[Tensor, Tensor]],
                       classes: tuple[str, ...] | list[str], ignore_index: int | None) -> dict[str, Any]:
    """Return test loss, pixel accuracy, per-class IoU and Dice, mean IoU with and without background.

    Pixels whose target is `ignore_index` count in no metric. "absent_classes" names the classes
    that neither the masks nor the predictions contain; their IoU and Dice are None.
    """
    confusion = ConfusionMatrix(max(len(classes), 2), ignore_index=ignore_index)
    result = trainer.evaluate(loader, confusion=confusion)
    confusion.reduce_()
    report = segmentation_report(confusion)
    return {
        "task": "segmentation",
        "test_loss": result.loss,
        "test_accuracy": report["pixel_accuracy"],
        "test_samples": result.samples,
        "test_pixels": report["num_pixels"],
        "classes": list(classes),
        "per_class": {"iou": report["iou"], "dice": report["dice"]},
        "mean_iou": report["mean_iou"],
        "mean_iou_without_background": report["mean_iou_without_background"],
        "mean_dice": report["mean_dice"],
        "absent_classes": [classes[index] for index in report["absent"]],
        "ignore_index": ignore_index,
        "confusion_matrix": as_counts(confusion),
    }
