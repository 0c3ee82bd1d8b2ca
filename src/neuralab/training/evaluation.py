"""Test-set evaluation of a trained classifier: loss, accuracy and the confusion-matrix metrics."""

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from neuralab.metrics import ConfusionMatrix, classification_report
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
