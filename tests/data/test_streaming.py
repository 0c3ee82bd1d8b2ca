"""Tests for image folders decoded from disk per batch: parity with memory, random crops, sharding, checks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuralab.config import DataConfig
from neuralab.data import streaming
from neuralab.data.augment import build_augment
from neuralab.data.batches import BatchLoader
from neuralab.data.prepare import Split, build_loader, prepare_test_data, prepare_training_data
from neuralab.data.streaming import StreamedSplit, StreamLoader

IGNORE = 255
# Gray level of each mask class in the images that _seg_folder writes, so a crop's alignment shows.
CLASS_GRAY = (40, 120, 200)


def _seg_folder(root: Path, sizes: list[tuple[int, int]], num_classes: int = 3, seed: int = 0) -> Path:
    """Write grayscale images whose pixels are CLASS_GRAY[mask value], and the masks, one pair per (height, width)."""
    generator = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for index, (height, width) in enumerate(sizes):
        values = generator.integers(0, num_classes, size=(height, width)).astype(np.uint8)
        Image.fromarray(np.asarray(CLASS_GRAY, dtype=np.uint8)[values]).save(root / "images" / f"s{index:02d}.png")
        Image.fromarray(values).save(root / "masks" / f"s{index:02d}.png")
    (root / "classes.txt").write_text("".join(f"class{index}\n" for index in range(num_classes)))
    return root


def _class_folder(root: Path, count: int) -> Path:
    generator = np.random.default_rng(1)
    for index in range(count):
        folder = root / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = generator.integers(0, 256, size=(7, 5, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:02d}.png")
    return root


def _config(root: Path, **values) -> DataConfig:
    return DataConfig(dataset="folder", data_dir=str(root), val_size=values.pop("val_size", 0), **values)


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def _assert_same_batches(expected: list, actual: list) -> None:
    assert len(actual) == len(expected)
    for step, ((images, targets), (other_images, other_targets)) in enumerate(zip(expected, actual)):
        assert torch.equal(images, other_images), f"images of batch {step}"
        assert torch.equal(targets, other_targets), f"targets of batch {step}"
        assert targets.dtype == other_targets.dtype


def test_budget_exceeded_streams(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(9, 11)] * 6)

    in_memory = prepare_training_data(_config(root, val_size=2))
    streamed = prepare_training_data(_config(root, val_size=2, memory_budget_mb=0))

    assert isinstance(in_memory.train, Split)
    assert isinstance(streamed.train, StreamedSplit)
    assert isinstance(streamed.val, StreamedSplit)
    assert len(streamed.train) == len(in_memory.train) == 4
    assert streamed.in_shape == in_memory.in_shape == (1, 9, 11)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_batches_match_memory(tmp_path, num_workers):
    root = _seg_folder(tmp_path / "seg", [(9, 11)] * 7)
    in_memory = prepare_training_data(_config(root, val_size=2, image_size=8))
    streamed = prepare_training_data(_config(root, val_size=2, image_size=8, memory_budget_mb=0,
                                             num_workers=num_workers))

    def loaders(data) -> list:
        return [build_loader(data.train, 2, shuffle=False), build_loader(data.val, 4, shuffle=False)]

    streamed_loaders = loaders(streamed)
    assert isinstance(streamed_loaders[0], StreamLoader)
    for memory_loader, streamed_loader in zip(loaders(in_memory), streamed_loaders):
        _assert_same_batches(_batches(memory_loader), _batches(streamed_loader))


def test_shuffled_augmented_stream_matches_memory(tmp_path):
    # The order and the shifts come from the same generator draws as BatchLoader's, over two epochs.
    root = _seg_folder(tmp_path / "seg", [(9, 11)] * 7)
    in_memory = prepare_training_data(_config(root, val_size=0))
    streamed = prepare_training_data(_config(root, val_size=0, memory_budget_mb=0, num_workers=0))

    def loader(data):
        augment = build_augment("shift", fill=data.background, max_shift=2, mask_fill=data.mask_fill)
        return build_loader(data.train, 3, shuffle=True, generator=torch.Generator().manual_seed(4), augment=augment)

    memory_loader, streamed_loader = loader(in_memory), loader(streamed)
    for _ in range(2):
        _assert_same_batches(_batches(memory_loader), _batches(streamed_loader))


def test_streamed_classification_matches_memory(tmp_path):
    root = _class_folder(tmp_path / "pets", 9)
    in_memory = prepare_training_data(_config(root, val_size=3))
    streamed = prepare_training_data(_config(root, val_size=3, memory_budget_mb=0, num_workers=0))

    expected = _batches(build_loader(in_memory.train, 4, shuffle=False))
    actual = _batches(build_loader(streamed.train, 4, shuffle=False))

    _assert_same_batches(expected, actual)
    assert actual[0][1].dtype == torch.int64


@pytest.mark.parametrize("world_size", [2, 3])
def test_stream_shards_match_one_process(tmp_path, world_size):
    root = _seg_folder(tmp_path / "seg", [(6, 6)] * 7)
    data = prepare_training_data(_config(root, memory_budget_mb=0, num_workers=0))

    def batches(batch_size: int, rank: int = 0, size: int = 1) -> list:
        return _batches(StreamLoader(data.train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(2),
                                     rank=rank, world_size=size))

    single = batches(2 * world_size)
    shards = [batches(2, rank, world_size) for rank in range(world_size)]

    assert all(len(shard) == len(single) for shard in shards)
    for step, (whole_images, whole_masks) in enumerate(single):
        assert torch.equal(torch.cat([shard[step][0] for shard in shards]), whole_images)
        assert torch.equal(torch.cat([shard[step][1] for shard in shards]), whole_masks)


def test_random_crop_size_values_and_alignment(tmp_path):
    # The images are smaller than the crop in one dimension, so every crop is padded somewhere.
    root = _seg_folder(tmp_path / "seg", [(9, 14), (12, 7), (10, 10), (9, 16)])
    data = prepare_training_data(_config(root, crop=True, image_size=11, num_workers=0, mean=0.0, std=1.0))
    loader = build_loader(data.train, 3, shuffle=True, generator=torch.Generator().manual_seed(0))

    batches = _batches(loader)

    assert [len(masks) for _, masks in batches] == [3, 1]
    for images, masks in batches:
        assert images.shape[1:] == (1, 11, 11)
        assert masks.shape[1:] == (11, 11)
        assert masks.dtype == torch.uint8
        assert set(masks.unique().tolist()) <= {0, 1, 2, IGNORE}
        pixels = (images[:, 0] * 255).round().long()
        for label, gray in enumerate(CLASS_GRAY):
            assert (pixels[masks == label] == gray).all(), f"class {label} pixels are not gray {gray}"
        assert (pixels[masks == IGNORE] == 0).all()  # padding: black image, ignored mask
    assert any(IGNORE in masks.unique().tolist() for _, masks in batches)


def test_binary_crop_pads_background(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(5, 5)] * 2, num_classes=2)
    data = prepare_training_data(_config(root, crop=True, image_size=8, num_workers=0))

    (_, masks), = _batches(build_loader(data.train, 2, shuffle=False, generator=torch.Generator().manual_seed(0)))

    assert data.ignore_index is None
    assert set(masks.unique().tolist()) <= {0, 1}
    assert int((masks == 0).sum()) >= 2 * (64 - 25)  # at least every padded pixel is background


def test_crops_repeat_for_seed_and_any_workers(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(13, 15)] * 5)

    def epochs(num_workers: int) -> list:
        data = prepare_training_data(_config(root, crop=True, image_size=8, num_workers=num_workers))
        loader = build_loader(data.train, 2, shuffle=True, generator=torch.Generator().manual_seed(3))
        return _batches(loader) + _batches(loader)

    first, again, with_workers = epochs(0), epochs(0), epochs(2)

    _assert_same_batches(first, again)
    _assert_same_batches(first, with_workers)
    assert not torch.equal(first[0][1], first[3][1])  # the second epoch draws other crops


def test_stream_leaves_global_generator(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(13, 15)] * 3)
    data = prepare_training_data(_config(root, crop=True, image_size=8, num_workers=0))
    loader = build_loader(data.train, 2, shuffle=True, generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()

    _batches(loader)

    assert torch.equal(torch.get_rng_state(), state)


def test_crop_evaluation_keeps_stored_sizes(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(12, 12)] * 4)
    _seg_folder(root / "test", [(9, 11), (9, 11), (10, 6), (9, 11)])
    data = prepare_training_data(_config(root, crop=True, image_size=8))

    test = prepare_test_data(_config(root, crop=True, image_size=8, num_workers=0), data.classes, data.in_shape)
    batches = _batches(build_loader(test, 4, shuffle=False))

    assert data.in_shape == (1, 8, 8)
    assert isinstance(test, StreamedSplit)
    assert [tuple(masks.shape) for _, masks in batches] == [(2, 9, 11), (1, 10, 6), (1, 9, 11)]


def test_crop_evaluation_of_one_size_in_memory(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(12, 12)] * 4)
    _seg_folder(root / "test", [(9, 11)] * 2)
    data = prepare_training_data(_config(root, crop=True, image_size=8))

    test = prepare_test_data(_config(root, crop=True, image_size=8), data.classes, data.in_shape)

    assert isinstance(test, Split)
    assert test.images.shape == (2, 1, 9, 11)


def test_streamed_mask_value_checked_before_training(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(6, 6)] * 3)
    Image.fromarray(np.full((6, 6), 7, dtype=np.uint8)).save(root / "masks" / "s01.png")

    with pytest.raises(ValueError, match=r"s01\.png: mask value 7 is out of range for 3 classes"):
        prepare_training_data(_config(root, memory_budget_mb=0))


def test_streamed_image_size_checked_before_training(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(6, 6), (6, 6), (5, 6)])

    with pytest.raises(ValueError, match=r"s02\.png: image is 5x6 but the first training image is 6x6"):
        prepare_training_data(_config(root, memory_budget_mb=0))


def test_crop_needs_segmentation_and_size(tmp_path):
    segmentation = _seg_folder(tmp_path / "seg", [(6, 6)] * 2)
    classification = _class_folder(tmp_path / "pets", 2)

    with pytest.raises(ValueError, match=r"data.crop needs data.image_size"):
        prepare_training_data(_config(segmentation, crop=True))
    with pytest.raises(ValueError, match=r"data.crop applies to segmentation folders .* classification folder"):
        prepare_training_data(_config(classification, crop=True, image_size=4))
    with pytest.raises(ValueError, match=r"data.crop applies to segmentation folders .* not to data set 'mnist'"):
        prepare_training_data(DataConfig(dataset="mnist", crop=True))


def test_crop_padding_counts_as_ignore(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(6, 9)] * 2)

    large_crop = prepare_training_data(_config(root, crop=True, image_size=8))
    small_crop = prepare_training_data(_config(root, crop=True, image_size=5))

    assert large_crop.train.contains_target(IGNORE)
    assert not small_crop.train.contains_target(IGNORE)


def test_loader_rejects_bad_arguments(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(6, 6)] * 2)
    crop = prepare_training_data(_config(root, crop=True, image_size=4)).train
    fixed = prepare_training_data(_config(root, memory_budget_mb=0)).train

    with pytest.raises(ValueError, match="cropping StreamLoader needs a seeded torch.Generator"):
        StreamLoader(crop, 2, shuffle=False)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        StreamLoader(fixed, 0, shuffle=False)
    with pytest.raises(ValueError, match="data.num_workers must be 0 or more, got -1"):
        streaming.scan_split(list(fixed.samples), fixed.spec, streaming.FIXED, mask_fill=0, mean=0.0, std=1.0,
                             num_workers=-1)


def test_default_workers_at_most_two():
    assert 1 <= streaming.default_num_workers() <= 2


def test_in_memory_loader_is_batch_loader(tmp_path):
    root = _seg_folder(tmp_path / "seg", [(6, 6)] * 2)
    data = prepare_training_data(_config(root))

    assert isinstance(build_loader(data.train, 2, shuffle=False), BatchLoader)
