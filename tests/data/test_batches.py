"""Tests for the validation hold-out, BatchLoader shuffling and sharding, and batch augmentation."""

import pytest
import torch

from neuralab.data.augment import RandomAffine, RandomShift, build_augment
from neuralab.data.batches import BatchLoader, split_validation, to_float_images


def _indexed_data(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return images whose every pixel contains the sample's index, and targets equal to the index."""
    targets = torch.arange(count)
    images = targets.float().reshape(count, 1, 1, 1).expand(count, 1, 4, 4).clone()
    return images, targets


def _batches(loader: BatchLoader) -> list[torch.Tensor]:
    return [targets for _, targets in loader]


def test_validation_split_fixed_by_seed():
    train, val = split_validation(100, 20, seed=3)
    train_again, val_again = split_validation(100, 20, seed=3)
    _, val_other_seed = split_validation(100, 20, seed=4)

    assert torch.equal(train, train_again)
    assert torch.equal(val, val_again)
    assert not torch.equal(val, val_other_seed)


def test_validation_split_disjoint():
    train, val = split_validation(100, 20, seed=0)

    assert len(train) == 80
    assert len(val) == 20
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))


def test_validation_split_empty():
    train, val = split_validation(10, 0, seed=0)

    assert train.tolist() == list(range(10))
    assert len(val) == 0


def test_validation_split_too_large():
    with pytest.raises(ValueError, match=r"val_size must be in \[0, 10\) for 10 training images, got 10"):
        split_validation(10, 10, seed=0)


def test_to_float_images_normalizes():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)

    floats = to_float_images(images, mean=0.5, std=0.25)

    expected = (torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]) - 0.5) / 0.25
    assert floats.shape == (1, 1, 2, 2)
    assert floats.dtype == torch.float32
    torch.testing.assert_close(floats, expected, rtol=0, atol=1e-6)


def test_unshuffled_keeps_order():
    images, targets = _indexed_data(10)

    batches = _batches(BatchLoader(images, targets, 4, shuffle=False))

    assert [batch.tolist() for batch in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_last_short_batch():
    images, targets = _indexed_data(10)
    loader = BatchLoader(images, targets, 4, shuffle=True, generator=torch.Generator().manual_seed(0))

    batches = list(loader)

    assert len(loader) == 3
    assert [len(batch_targets) for _, batch_targets in batches] == [4, 4, 2]
    for batch_images, batch_targets in batches:
        assert torch.equal(batch_images[:, 0, 0, 0].long(), batch_targets)


def test_shuffle_seeded():
    images, targets = _indexed_data(50)
    first = BatchLoader(images, targets, 8, shuffle=True, generator=torch.Generator().manual_seed(7))
    second = BatchLoader(images, targets, 8, shuffle=True, generator=torch.Generator().manual_seed(7))
    other = BatchLoader(images, targets, 8, shuffle=True, generator=torch.Generator().manual_seed(8))

    first_epochs = [torch.cat(_batches(first)) for _ in range(2)]
    second_epochs = [torch.cat(_batches(second)) for _ in range(2)]
    other_epoch = torch.cat(_batches(other))

    assert torch.equal(first_epochs[0], second_epochs[0])
    assert torch.equal(first_epochs[1], second_epochs[1])
    assert not torch.equal(first_epochs[0], first_epochs[1])
    assert not torch.equal(first_epochs[0], other_epoch)
    assert sorted(first_epochs[0].tolist()) == list(range(50))


def test_shuffle_needs_generator():
    images, targets = _indexed_data(4)

    with pytest.raises(ValueError, match="a shuffling BatchLoader needs a seeded torch.Generator"):
        BatchLoader(images, targets, 2, shuffle=True)


def test_length_mismatch():
    images, targets = _indexed_data(4)

    with pytest.raises(ValueError, match="got 4 images but 3 targets"):
        BatchLoader(images, targets[:3], 2, shuffle=False)


def test_batch_size_below_one():
    images, targets = _indexed_data(4)

    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        BatchLoader(images, targets, 0, shuffle=False)


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_shards_are_batch_halves(shuffle):
    images, targets = _indexed_data(23)

    def loader(batch_size: int, rank: int = 0, world_size: int = 1) -> BatchLoader:
        generator = torch.Generator().manual_seed(5) if shuffle else None
        return BatchLoader(images, targets, batch_size, shuffle=shuffle, generator=generator,
                           rank=rank, world_size=world_size)

    single = list(loader(6))
    rank0, rank1 = list(loader(3, 0, 2)), list(loader(3, 1, 2))

    assert len(rank0) == len(rank1) == len(single) == 4
    for (images0, targets0), (images1, targets1), (whole_images, whole_targets) in zip(rank0, rank1, single):
        assert torch.equal(torch.cat([targets0, targets1]), whole_targets)
        assert torch.equal(torch.cat([images0, images1]), whole_images)
    # The last global batch has 5 samples: rank 0 takes 3 and rank 1 takes 2.
    assert len(rank0[-1][1]) == 3
    assert len(rank1[-1][1]) == 2


def test_augmented_shards_partition_epochs():
    # Each rank augments only its own part of a batch; the ranks must still agree on every epoch's order.
    images, targets = _indexed_data(11)
    augment = RandomShift(max_shift=1, fill=0.0)
    loaders = [BatchLoader(images, targets, 2, shuffle=True, generator=torch.Generator().manual_seed(3),
                           augment=augment, rank=rank, world_size=2) for rank in range(2)]

    for epoch in range(3):
        seen = [target for loader in loaders for target in torch.cat(_batches(loader)).tolist()]

        assert sorted(seen) == list(range(11)), f"epoch {epoch}: ranks saw {sorted(seen)}"


def _shift_by_roll(image: torch.Tensor, down: int, right: int, fill: float) -> torch.Tensor:
    """Return `image` (C, H, W) moved `down` rows and `right` columns, with `fill` in the vacated border."""
    shifted = torch.roll(image, shifts=(down, right), dims=(1, 2))
    if down > 0:
        shifted[:, :down, :] = fill
    elif down < 0:
        shifted[:, down:, :] = fill
    if right > 0:
        shifted[:, :, :right] = fill
    elif right < 0:
        shifted[:, :, right:] = fill
    return shifted


def test_random_shift_matches_roll():
    torch.manual_seed(0)
    images = torch.randn(16, 2, 7, 9)
    fill, max_shift = -0.5, 2

    shifted = RandomShift(max_shift, fill)(images, torch.Generator().manual_seed(11))

    # RandomShift draws, per image, where its crop starts in the image padded by max_shift:
    # a crop starting at offset o moves the image by max_shift - o pixels.
    offsets = torch.randint(0, 2 * max_shift + 1, (2, 16), generator=torch.Generator().manual_seed(11))
    assert shifted.shape == images.shape
    assert len({tuple(pair) for pair in offsets.T.tolist()}) > 1
    for index in range(16):
        down, right = max_shift - int(offsets[0, index]), max_shift - int(offsets[1, index])
        expected = _shift_by_roll(images[index], down, right, fill)
        assert torch.equal(shifted[index], expected), f"image {index} shifted by ({down}, {right})"


def test_random_shift_zero_is_identity():
    images = torch.randn(3, 1, 5, 5)

    assert torch.equal(RandomShift(0, 0.0)(images, torch.Generator().manual_seed(0)), images)


def test_random_shift_negative_rejected():
    with pytest.raises(ValueError, match="max_shift must be non-negative, got -1"):
        RandomShift(-1, 0.0)


def test_random_affine_zero_ranges_identity():
    torch.manual_seed(0)
    images = torch.randn(4, 1, 28, 28)

    transformed = RandomAffine(degrees=0.0, scale=0.0, max_shift=0.0, fill=-0.4242)(
        images, torch.Generator().manual_seed(0))

    torch.testing.assert_close(transformed, images, rtol=0, atol=1e-5)


def test_random_affine_draws_per_image():
    # Identical images must come out different, because every image gets its own rotation, zoom and shift.
    images = torch.randn(1, 1, 28, 28).expand(2, 1, 28, 28).clone()
    affine = RandomAffine(degrees=10.0, scale=0.1, max_shift=2.0, fill=0.0)

    transformed = affine(images, torch.Generator().manual_seed(0))

    assert transformed.shape == images.shape
    assert torch.isfinite(transformed).all()
    assert not torch.equal(transformed[0], transformed[1])


def test_build_augment_names():
    assert build_augment("none", fill=0.0) is None
    assert isinstance(build_augment("shift", fill=0.0), RandomShift)
    assert isinstance(build_augment("affine", fill=0.0), RandomAffine)

    with pytest.raises(ValueError, match="unknown augmentation 'flip'; valid names: none, shift, affine"):
        build_augment("flip", fill=0.0)
