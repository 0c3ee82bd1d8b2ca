"""Tests for segmentation metrics on 4x4 binary masks with values worked out by hand."""

import json

import pytest
import torch

from neuralab.metrics import (
    ConfusionMatrix,
    absent_classes,
    mean_iou,
    per_class_dice,
    per_class_iou,
    pixel_accuracy,
    segmentation_report,
)

BACKGROUND, FOREGROUND, IGNORE = 0, 1, 255


def _mask(*foreground: tuple[int, int]) -> torch.Tensor:
    """Return a (1, 4, 4) background mask with the given (row, column) pixels set to foreground."""
    mask = torch.zeros(1, 4, 4, dtype=torch.int64)
    for row, column in foreground:
        mask[0, row, column] = FOREGROUND
    return mask


def _report(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int = 2) -> dict:
    confusion = ConfusionMatrix(num_classes=num_classes, ignore_index=IGNORE)
    confusion.update(predictions, targets)
    return segmentation_report(confusion)


SQUARE = ((0, 0), (0, 1), (1, 0), (1, 1))  # 4 foreground pixels
SHIFTED = ((0, 1), (0, 2), (1, 1), (1, 2))  # overlaps SQUARE on column 1 only: 2 pixels


def test_both_masks_empty():
    report = _report(_mask(), _mask())
    assert report["iou"] == [1.0, None]
    assert report["dice"] == [1.0, None]
    assert report["absent"] == [FOREGROUND]
    assert report["mean_iou"] == 1.0
    assert report["mean_iou_without_background"] is None
    assert report["mean_dice"] == 1.0
    assert report["pixel_accuracy"] == 1.0


def test_prediction_empty():
    # Foreground: TP 0, FN 4. Background: TP 12, FP 4 (the missed foreground).
    report = _report(_mask(), _mask(*SQUARE))
    assert report["iou"] == pytest.approx([12 / 16, 0.0], abs=1e-12)
    assert report["dice"] == pytest.approx([24 / 28, 0.0], abs=1e-12)
    assert report["absent"] == []
    assert report["mean_iou"] == pytest.approx(0.375, abs=1e-12)
    assert report["mean_iou_without_background"] == 0.0
    assert report["pixel_accuracy"] == pytest.approx(0.75, abs=1e-12)


def test_ground_truth_empty():
    # Foreground: TP 0, FP 4. Background: TP 12, FN 4.
    report = _report(_mask(*SQUARE), _mask())
    assert report["iou"] == pytest.approx([12 / 16, 0.0], abs=1e-12)
    assert report["dice"] == pytest.approx([24 / 28, 0.0], abs=1e-12)
    assert report["absent"] == []
    assert report["mean_iou_without_background"] == 0.0


def test_identical_masks():
    report = _report(_mask(*SQUARE), _mask(*SQUARE))
    assert report["iou"] == [1.0, 1.0]
    assert report["dice"] == [1.0, 1.0]
    assert report["mean_iou"] == 1.0
    assert report["mean_iou_without_background"] == 1.0
    assert report["pixel_accuracy"] == 1.0


def test_half_overlap():
    # Foreground: TP 2, FP 2, FN 2. Background: TP 16 - 6 = 10, FP 2, FN 2.
    report = _report(_mask(*SHIFTED), _mask(*SQUARE))
    assert report["dice"][FOREGROUND] == pytest.approx(0.5, abs=1e-12)
    assert report["iou"][FOREGROUND] == pytest.approx(1 / 3, abs=1e-12)
    assert report["iou"][BACKGROUND] == pytest.approx(10 / 14, abs=1e-12)
    assert report["dice"][BACKGROUND] == pytest.approx(20 / 24, abs=1e-12)
    assert report["mean_iou"] == pytest.approx((10 / 14 + 1 / 3) / 2, abs=1e-12)
    assert report["mean_iou_without_background"] == pytest.approx(1 / 3, abs=1e-12)
    assert report["pixel_accuracy"] == pytest.approx(12 / 16, abs=1e-12)


def test_ignore_pixels_excluded():
    # Marking the two missed foreground pixels of the half overlap as 255 removes its FN.
    targets = _mask(*SQUARE)
    targets[0, 0, 0] = IGNORE
    targets[0, 1, 0] = IGNORE
    report = _report(_mask(*SHIFTED), targets)
    assert report["num_pixels"] == 14
    assert report["iou"][FOREGROUND] == pytest.approx(2 / 4, abs=1e-12)
    assert report["dice"][FOREGROUND] == pytest.approx(4 / 6, abs=1e-12)
    assert report["pixel_accuracy"] == pytest.approx(12 / 14, abs=1e-12)


def test_out_of_range_target_raises():
    targets = _mask(*SQUARE)
    targets[0, 3, 3] = 2
    confusion = ConfusionMatrix(num_classes=2, ignore_index=IGNORE)
    with pytest.raises(ValueError, match=r"targets contains class index 2, .*num_classes=2"):
        confusion.update(_mask(), targets)


def test_absent_judged_over_whole_set():
    # Class 2 occurs only in the second image, so over the whole set it is present.
    confusion = ConfusionMatrix(num_classes=4)
    first = _mask(*SQUARE)
    second = _mask()
    second[0, 3, 3] = 2
    confusion.update(first, first)
    confusion.update(second, second)
    assert absent_classes(confusion) == [3]
    assert per_class_iou(confusion) == [1.0, 1.0, 1.0, None]
    assert mean_iou(confusion) == 1.0


def test_absent_class_excluded_from_means():
    # Three classes, class 2 absent: the means average classes 0 and 1 only.
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(_mask(*SHIFTED), _mask(*SQUARE))
    assert mean_iou(confusion) == pytest.approx((10 / 14 + 1 / 3) / 2, abs=1e-12)
    assert mean_iou(confusion, include_background=False) == pytest.approx(1 / 3, abs=1e-12)
    assert segmentation_report(confusion)["mean_dice"] == pytest.approx((20 / 24 + 0.5) / 2)


def test_nothing_counted_reports_none():
    report = segmentation_report(torch.zeros(2, 2, dtype=torch.int64))
    assert report["pixel_accuracy"] is None
    assert report["iou"] == [None, None]
    assert report["absent"] == [0, 1]
    assert report["mean_iou"] is None
    assert report["mean_dice"] is None


def test_random_masks_bounded_and_json():
    generator = torch.Generator().manual_seed(0)
    confusion = ConfusionMatrix(num_classes=5, ignore_index=IGNORE)
    for _ in range(3):
        # Labels are 0-3 only, so class 4 stays absent. The first row of each image is ignored.
        targets = torch.randint(0, 4, (2, 7, 9), generator=generator)
        targets[:, 0, :] = IGNORE
        predictions = torch.randint(0, 4, (2, 7, 9), generator=generator)
        confusion.update(predictions, targets)
    report = segmentation_report(confusion)
    defined = [value for value in report["iou"] + report["dice"] if value is not None]
    assert all(0.0 <= value <= 1.0 for value in defined)
    assert report["absent"] == [4]
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_dice_iou_relation():
    # For every class, Dice = 2 IoU / (1 + IoU).
    matrix = torch.tensor([[50, 3, 2], [4, 20, 6], [1, 5, 9]])
    for iou, dice in zip(per_class_iou(matrix), per_class_dice(matrix), strict=True):
        assert dice == pytest.approx(2 * iou / (1 + iou), abs=1e-12)


def test_pixel_accuracy_by_hand():
    matrix = torch.tensor([[50, 3, 2], [4, 20, 6], [1, 5, 9]])
    assert pixel_accuracy(matrix) == pytest.approx(79 / 100, abs=1e-12)
