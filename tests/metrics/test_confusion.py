"""Tests for ConfusionMatrix: counting, ignore_index, input checks, merging and all-reduce."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralab.metrics import ConfusionMatrix

# targets / predictions worked by hand: rows are true classes, columns predicted classes.
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTIONS = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
EXPECTED = torch.tensor(
    [
        [2, 1, 0],
        [0, 1, 1],
        [1, 0, 2],
    ]
)


def test_update_counts_true_rows_predicted_columns():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS, TARGETS)
    torch.testing.assert_close(confusion.matrix, EXPECTED)


def test_matrix_dtype_and_shape():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS, TARGETS)
    assert confusion.matrix.dtype == torch.int64
    assert confusion.matrix.shape == (3, 3)


def test_update_accumulates_batches():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS[:3], TARGETS[:3])
    confusion.update(PREDICTIONS[3:], TARGETS[3:])
    torch.testing.assert_close(confusion.matrix, EXPECTED)


def test_update_masks_match_flattened():
    masks_true = TARGETS.reshape(2, 2, 2)  # (B, H, W)
    masks_pred = PREDICTIONS.reshape(2, 2, 2)
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(masks_pred, masks_true)
    torch.testing.assert_close(confusion.matrix, EXPECTED)


def test_update_accepts_uint8_masks():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS.to(torch.uint8), TARGETS.to(torch.uint8))
    torch.testing.assert_close(confusion.matrix, EXPECTED)


def test_update_empty_batch_counts_nothing():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    assert confusion.matrix.sum().item() == 0


def test_ignore_index_skips_pixels():
    targets = torch.tensor([[0, 255], [1, 255]], dtype=torch.uint8)
    predictions = torch.tensor([[0, 1], [1, 0]], dtype=torch.uint8)
    confusion = ConfusionMatrix(num_classes=2, ignore_index=255)
    confusion.update(predictions, targets)
    torch.testing.assert_close(confusion.matrix, torch.tensor([[1, 0], [0, 1]]))


def test_ignore_index_skips_any_prediction():
    # The prediction at an ignored pixel is never checked or counted, even when out of range.
    confusion = ConfusionMatrix(num_classes=2, ignore_index=-100)
    confusion.update(torch.tensor([1, 9]), torch.tensor([1, -100]))
    torch.testing.assert_close(confusion.matrix, torch.tensor([[0, 0], [0, 1]]))


def test_target_out_of_range_raises():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"targets contains class index 7, .*num_classes=3"):
        confusion.update(torch.tensor([0, 1]), torch.tensor([0, 7]))


def test_negative_target_raises():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"targets contains class index -1, .*\[0, 3\)"):
        confusion.update(torch.tensor([0, 1]), torch.tensor([0, -1]))


def test_target_out_of_range_names_ignore_index():
    confusion = ConfusionMatrix(num_classes=3, ignore_index=255)
    with pytest.raises(ValueError, match=r"class index 254, .*not ignore_index=255"):
        confusion.update(torch.tensor([0, 1]), torch.tensor([255, 254]))


def test_failed_update_leaves_counts_unchanged():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS, TARGETS)
    with pytest.raises(ValueError):
        confusion.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    torch.testing.assert_close(confusion.matrix, EXPECTED)


def test_prediction_out_of_range_raises():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"predictions contains class index 3, .*num_classes=3"):
        confusion.update(torch.tensor([0, 3]), torch.tensor([0, 1]))


def test_shape_mismatch_raises():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2,\)"):
        confusion.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_float_predictions_raise_type_error():
    confusion = ConfusionMatrix(num_classes=3)
    with pytest.raises(TypeError, match=r"predictions must be an integer tensor.*argmax"):
        confusion.update(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("num_classes", [0, -2, 2.0, True])
def test_invalid_num_classes_raises(num_classes):
    with pytest.raises(ValueError, match=r"num_classes must be a positive int"):
        ConfusionMatrix(num_classes=num_classes)


def test_reset_zeroes_counts():
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS, TARGETS)
    confusion.reset()
    assert confusion.matrix.sum().item() == 0


def test_merge_adds_counts():
    first = ConfusionMatrix(num_classes=3)
    second = ConfusionMatrix(num_classes=3)
    first.update(PREDICTIONS[:4], TARGETS[:4])
    second.update(PREDICTIONS[4:], TARGETS[4:])
    merged = first.merge(second)
    assert merged is first
    torch.testing.assert_close(first.matrix, EXPECTED)


def test_merge_different_num_classes_raises():
    with pytest.raises(ValueError, match=r"num_classes=2 into one with num_classes=3"):
        ConfusionMatrix(num_classes=3).merge(ConfusionMatrix(num_classes=2))


def test_reduce_without_distributed_is_noop():
    assert not dist.is_initialized()
    confusion = ConfusionMatrix(num_classes=3)
    confusion.update(PREDICTIONS, TARGETS)
    confusion.reduce_()
    torch.testing.assert_close(confusion.matrix, EXPECTED)


def _reduce_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """Count one half of the samples on each rank, all-reduce, and save the result."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        confusion = ConfusionMatrix(num_classes=3)
        shard = slice(rank * 4, (rank + 1) * 4)
        confusion.update(PREDICTIONS[shard], TARGETS[shard])
        confusion.reduce_()
        torch.save(confusion.matrix, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_reduce_sums_over_processes(tmp_path):
    world_size = 2
    mp.spawn(
        _reduce_worker,
        args=(world_size, str(tmp_path / "init"), str(tmp_path)),
        nprocs=world_size,
    )
    for rank in range(world_size):
        reduced = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(reduced, EXPECTED)


def test_matches_sklearn_confusion_matrix():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (200,), generator=generator)
    predictions = torch.randint(0, 5, (200,), generator=generator)
    confusion = ConfusionMatrix(num_classes=5)
    confusion.update(predictions, targets)
    expected = metrics.confusion_matrix(targets.numpy(), predictions.numpy(), labels=range(5))
    assert confusion.matrix.tolist() == expected.tolist()
