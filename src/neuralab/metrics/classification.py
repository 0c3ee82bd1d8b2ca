"""Classification metrics from one confusion matrix, returned as plain Python values for JSON.

A ratio whose denominator is zero is undefined, so it is reported as None (JSON null) rather
than NaN or a silent 0.0. That covers precision of a class never predicted, recall of a class
with no samples, and F1 of a class neither predicted nor present. Macro means skip None values.
"""

from torch import Tensor

from neuralab.metrics.confusion import ConfusionMatrix, as_counts

Confusion = ConfusionMatrix | Tensor


def class_counts(confusion: Confusion) -> dict[str, list[int]]:
    """Return per-class true positives, false positives, false negatives and support (row sums)."""
    counts = as_counts(confusion)
    num_classes = len(counts)

    true_positives = [counts[c][c] for c in range(num_classes)]
    support = [sum(row) for row in counts]
    predicted = [sum(row[c] for row in counts) for c in range(num_classes)]
    return {
        "tp": true_positives,
        "fp": [predicted[c] - true_positives[c] for c in range(num_classes)],
        "fn": [support[c] - true_positives[c] for c in range(num_classes)],
        "support": support,
    }


def ratio_or_none(numerator: int, denominator: int) -> float | None:
    """Return numerator / denominator, or None when the denominator is 0 (undefined ratio)."""
    if denominator == 0:
        return None
    return numerator / denominator


def mean_of_defined(values: list[float | None]) -> float | None:
    """Return the mean of the values that are not None, or None when no value is defined."""
    defined = [value for value in values if value is not None]
    if not defined:
        return None
    return sum(defined) / len(defined)


def accuracy(confusion: Confusion) -> float | None:
    """Return the fraction of counted samples on the diagonal, or None when nothing was counted."""
    counts = as_counts(confusion)
    correct = sum(counts[c][c] for c in range(len(counts)))
    total = sum(sum(row) for row in counts)
    return ratio_or_none(correct, total)


def per_class_metrics(confusion: Confusion) -> dict[str, list]:
    """Return per-class lists "precision", "recall", "f1" (float or None) and "support" (int).

    F1 is 2TP / (2TP + FP + FN), so a class with support that is never predicted gets F1 0.0
    (a real miss) while its precision is None.
    """
    counts = class_counts(confusion)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    classes = range(len(tp))
    return {
        "precision": [ratio_or_none(tp[c], tp[c] + fp[c]) for c in classes],
        "recall": [ratio_or_none(tp[c], tp[c] + fn[c]) for c in classes],
        "f1": [ratio_or_none(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in classes],
        "support": counts["support"],
    }


def macro_averages(confusion: Confusion) -> dict[str, float | None]:
    """Return unweighted means of "precision", "recall" and "f1" over the classes where defined."""
    return _macro_from_per_class(per_class_metrics(confusion))


def most_confused(confusion: Confusion, k: int = 5) -> list[dict[str, int]]:
    """Return up to `k` off-diagonal cells with the largest non-zero counts, largest first.

    Each entry is {"true": class, "predicted": class, "count": int}. Ties are ordered by
    (true, predicted) so the output is deterministic.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    counts = as_counts(confusion)

    cells = [
        {"true": true_class, "predicted": predicted_class, "count": count}
        for true_class, row in enumerate(counts)
        for predicted_class, count in enumerate(row)
        if true_class != predicted_class and count > 0
    ]
    cells.sort(key=lambda cell: (-cell["count"], cell["true"], cell["predicted"]))
    return cells[:k]


def classification_report(confusion: Confusion, top_k: int = 5) -> dict:
    """Return every classification metric in one JSON-ready dict.

    Keys: "num_samples", "accuracy", "per_class" (see per_class_metrics), "macro" (see
    macro_averages) and "most_confused" (see most_confused, at most `top_k` entries).
    """
    per_class = per_class_metrics(confusion)
    return {
        "num_samples": sum(per_class["support"]),
        "accuracy": accuracy(confusion),
        "per_class": per_class,
        "macro": _macro_from_per_class(per_class),
        "most_confused": most_confused(confusion, k=top_k),
    }


def _macro_from_per_class(per_class: dict[str, list]) -> dict[str, float | None]:
    return {name: mean_of_defined(per_class[name]) for name in ("precision", "recall", "f1")}
