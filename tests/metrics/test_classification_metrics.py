"""Tests for classification metrics against values worked out by hand, and against sklearn."""

import json
import math

import pytest
import torch

from neuralab.metrics import (
    ConfusionMatrix,
    accuracy,
    class_counts,
    classification_report,
    macro_averages,
    most_confused,
    per_class_metrics,
)

# Four classes, worked by hand. Class 3 is predicted once but never occurs in the targets.
#   targets     0 0 0 1 1 2 2 2
#   predictions 0 0 1 1 3 2 2 0
MATRIX = torch.tensor(
    [
        [2, 1, 0, 0],
        [0, 1, 0, 1],
        [1, 0, 2, 0],
        [0, 0, 0, 0],
    ]
)


def test_class_counts_by_hand():
    counts = class_counts(MATRIX)
    assert counts["tp"] == [2, 1, 2, 0]
    assert counts["fp"] == [1, 1, 0, 1]
    assert counts["fn"] == [1, 1, 1, 0]
    assert counts["support"] == [3, 2, 3, 0]


def test_accuracy_by_hand():
    assert accuracy(MATRIX) == pytest.approx(5 / 8, abs=1e-12)


def test_accuracy_accepts_confusion_matrix():
    confusion = ConfusionMatrix(num_classes=4)
    confusion.update(torch.tensor([0, 0, 1, 1, 3, 2, 2, 0]), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]))
    assert accuracy(confusion) == pytest.approx(5 / 8, abs=1e-12)


def test_per_class_precision_by_hand():
    precision = per_class_metrics(MATRIX)["precision"]
    assert precision == pytest.approx([2 / 3, 1 / 2, 1.0, 0.0], abs=1e-12)


def test_per_class_recall_none_without_support():
    recall = per_class_metrics(MATRIX)["recall"]
    assert recall[:3] == pytest.approx([2 / 3, 1 / 2, 2 / 3], abs=1e-12)
    assert recall[3] is None


def test_per_class_f1_by_hand():
    f1 = per_class_metrics(MATRIX)["f1"]
    assert f1 == pytest.approx([2 / 3, 1 / 2, 4 / 5, 0.0], abs=1e-12)


def test_per_class_support_is_int():
    support = per_class_metrics(MATRIX)["support"]
    assert support == [3, 2, 3, 0]
    assert all(type(count) is int for count in support)


def test_macro_averages_skip_undefined():
    macro = macro_averages(MATRIX)
    assert macro["precision"] == pytest.approx(13 / 24, abs=1e-12)
    assert macro["recall"] == pytest.approx(11 / 18, abs=1e-12)  # class 3 left out
    assert macro["f1"] == pytest.approx(59 / 120, abs=1e-12)


def test_never_predicted_class_precision_none():
    # Class 1 has one sample and is never predicted: precision is 0/0, recall and F1 are 0.
    metrics = per_class_metrics(torch.tensor([[2, 0], [1, 0]]))
    assert metrics["precision"][1] is None
    assert metrics["recall"][1] == 0.0
    assert metrics["f1"][1] == 0.0
    assert macro_averages(torch.tensor([[2, 0], [1, 0]]))["precision"] == pytest.approx(2 / 3)


def test_absent_class_f1_none_and_excluded():
    matrix = torch.tensor([[3, 0, 0], [0, 1, 0], [0, 0, 0]])
    metrics = per_class_metrics(matrix)
    assert metrics["precision"][2] is None
    assert metrics["recall"][2] is None
    assert metrics["f1"][2] is None
    assert macro_averages(matrix)["f1"] == 1.0


def test_empty_matrix_reports_none():
    report = classification_report(torch.zeros(3, 3, dtype=torch.int64))
    assert report["num_samples"] == 0
    assert report["accuracy"] is None
    assert report["macro"] == {"precision": None, "recall": None, "f1": None}
    assert report["most_confused"] == []


def test_most_confused_orders_by_count():
    matrix = torch.tensor([[5, 1, 4], [0, 2, 0], [7, 1, 3]])
    assert most_confused(matrix, k=3) == [
        {"true": 2, "predicted": 0, "count": 7},
        {"true": 0, "predicted": 2, "count": 4},
        {"true": 0, "predicted": 1, "count": 1},
    ]


def test_most_confused_ties_and_zero_counts():
    # Ties are ordered by (true, predicted). Zero cells are never listed, even when k is larger.
    assert most_confused(MATRIX, k=10) == [
        {"true": 0, "predicted": 1, "count": 1},
        {"true": 1, "predicted": 3, "count": 1},
        {"true": 2, "predicted": 0, "count": 1},
    ]


def test_most_confused_k_limits_length():
    assert len(most_confused(MATRIX, k=2)) == 2


def test_most_confused_negative_k_raises():
    with pytest.raises(ValueError, match=r"k must be a non-negative int, got -1"):
        most_confused(MATRIX, k=-1)


def test_report_keys_and_json():
    report = classification_report(MATRIX, top_k=2)
    assert set(report) == {"num_samples", "accuracy", "per_class", "macro", "most_confused"}
    assert report["num_samples"] == 8
    assert len(report["most_confused"]) == 2
    decoded = json.loads(json.dumps(report, allow_nan=False))
    assert decoded["per_class"]["recall"][3] is None


def test_non_square_matrix_raises():
    with pytest.raises(ValueError, match=r"square with shape \(n, n\).*got \(2, 3\)"):
        accuracy(torch.zeros(2, 3, dtype=torch.int64))


def test_float_matrix_raises():
    with pytest.raises(TypeError, match=r"integer counts, got dtype torch.float32"):
        accuracy(torch.zeros(2, 2))


def test_negative_counts_raise():
    with pytest.raises(ValueError, match=r"negative counts"):
        accuracy(torch.tensor([[1, -1], [0, 1]]))


def _none_to_nan(values: list) -> list[float]:
    return [math.nan if value is None else value for value in values]


def test_matches_sklearn():
    np = pytest.importorskip("numpy")
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    num_classes = 6
    # Classes 0-3 occur in the targets, classes 1-4 are predicted and class 5 never occurs.
    targets = torch.randint(0, 4, (300,), generator=generator)
    predictions = torch.randint(1, 5, (300,), generator=generator)
    confusion = ConfusionMatrix(num_classes=num_classes)
    confusion.update(predictions, targets)
    ours = per_class_metrics(confusion)

    y_true, y_pred = targets.numpy(), predictions.numpy()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(num_classes)), average=None, zero_division=np.nan
    )
    np.testing.assert_allclose(_none_to_nan(ours["precision"]), precision, atol=1e-12)
    np.testing.assert_allclose(_none_to_nan(ours["recall"]), recall, atol=1e-12)
    np.testing.assert_allclose(_none_to_nan(ours["f1"]), f1, atol=1e-12)
    assert ours["support"] == support.tolist()
    assert accuracy(confusion) == pytest.approx(metrics.accuracy_score(y_true, y_pred), abs=1e-12)


def test_macro_matches_sklearn():
    np = pytest.importorskip("numpy")
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 4, (300,), generator=generator)
    predictions = torch.randint(1, 5, (300,), generator=generator)
    confusion = ConfusionMatrix(num_classes=6)
    confusion.update(predictions, targets)
    ours = macro_averages(confusion)

    # Without labels=, sklearn averages over the classes seen in targets or predictions,
    # and zero_division=nan leaves the undefined ratios out of the mean.
    y_true, y_pred = targets.numpy(), predictions.numpy()
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=np.nan
    )
    assert ours["precision"] == pytest.approx(precision, abs=1e-12)
    assert ours["recall"] == pytest.approx(recall, abs=1e-12)
    assert ours["f1"] == pytest.approx(f1, abs=1e-12)
