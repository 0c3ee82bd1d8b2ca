"""Tests for mnist-scenes: seeded generation, the labelling rules, disjoint sources and the on-disk cache."""

import logging

import pytest
import torch

from conftest import write_split
from neuralab.data import scenes
from neuralab.data.batches import split_validation
from neuralab.data.scenes import SceneLayout, draw_layout, generate_scenes, load_scenes, render_scenes

# Intensities that mark which split a fake digit comes from (see `marked_mnist_dir`).
TRAIN_INTENSITY, VAL_INTENSITY, TEST_INTENSITY = 255, 150, 200
FAKE_TRAIN_IMAGES, FAKE_TEST_IMAGES, FAKE_VAL_SIZE = 40, 10, 8


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Keep every scene cache inside the test's own folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(scenes.CACHE_DIR_VARIABLE, str(folder))
    return folder


def _layout(sources: list[list[int]], rows: list[list[int]], cols: list[list[int]],
            num_digits: list[int]) -> SceneLayout:
    return SceneLayout(torch.tensor(num_digits), torch.tensor(sources), torch.tensor(rows), torch.tensor(cols))


def _solid_digits(values: list[int]) -> torch.Tensor:
    """Return 28x28 digits, each filled with one intensity."""
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1).expand(-1, 28, 28).clone()


@pytest.fixture
def marked_mnist_dir(tmp_path):
    """A fake MNIST folder whose held-out training digits have intensity 150, the others 255, test digits 200."""
    folder = tmp_path / "marked-mnist"
    folder.mkdir()
    train_images = torch.full((FAKE_TRAIN_IMAGES, 28, 28), TRAIN_INTENSITY, dtype=torch.uint8)
    _, val_index = split_validation(FAKE_TRAIN_IMAGES, FAKE_VAL_SIZE, seed=5)
    train_images[val_index] = VAL_INTENSITY
    test_images = torch.full((FAKE_TEST_IMAGES, 28, 28), TEST_INTENSITY, dtype=torch.uint8)
    write_split(folder, "train", train_images, torch.arange(FAKE_TRAIN_IMAGES) % 10)
    write_split(folder, "t10k", test_images, torch.arange(FAKE_TEST_IMAGES) % 10)
    return folder


def test_generation_repeats_for_same_seed(mnist_slice):
    images, labels = mnist_slice["train"]

    first = generate_scenes(images, labels, 50, seed=7)
    second = generate_scenes(images, labels, 50, seed=7)
    other_seed = generate_scenes(images, labels, 50, seed=8)

    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other_seed[0])


def test_generation_shapes_and_classes(mnist_slice):
    images, labels = mnist_slice["train"]

    scene_images, masks = generate_scenes(images, labels, 300, seed=0)

    assert scene_images.shape == (300, 64, 64)
    assert masks.shape == (300, 64, 64)
    assert scene_images.dtype == torch.uint8
    assert masks.dtype == torch.uint8
    assert set(masks.unique().tolist()) == set(range(11))


def test_mask_threshold_at_128():
    digits = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digits[0, 0, 0] = 127
    digits[0, 0, 1] = 128
    digits[0, 0, 2] = 255
    layout = _layout([[0, 0, 0]], [[10, 0, 0]], [[20, 0, 0]], num_digits=[1])

    scene, mask = render_scenes(digits, torch.tensor([4]), layout)

    assert scene[0, 10, 20:23].tolist() == [127, 128, 255]
    assert mask[0, 10, 20:23].tolist() == [0, 5, 5]
    assert int((mask > 0).sum()) == 2


def test_label_is_digit_plus_one():
    layout = _layout([[0, 1, 0]], [[0, 36, 0]], [[0, 36, 0]], num_digits=[2])

    _, mask = render_scenes(_solid_digits([200, 200]), torch.tensor([0, 9]), layout)

    assert mask[0, 0, 0] == 1
    assert mask[0, 63, 63] == 10


def test_later_digit_wins_overlap():
    # Digit 0 (label 3) fills rows 0-27; digit 1 (label 7) fills rows 14-41 in the same columns.
    layout = _layout([[0, 1, 0]], [[0, 14, 0]], [[0, 0, 0]], num_digits=[2])

    scene, mask = render_scenes(_solid_digits([130, 250]), torch.tensor([3, 7]), layout)

    assert mask[0, 5, 5] == 4  # only the first digit
    assert mask[0, 20, 5] == 8  # both: the later digit wins
    assert mask[0, 35, 5] == 8  # only the later digit
    assert scene[0, 20, 5] == 250  # intensities combine by maximum


def test_later_faint_digit_keeps_label_below():
    # The later digit is below the threshold, so it labels nothing and the earlier label stays.
    layout = _layout([[0, 1, 0]], [[0, 0, 0]], [[0, 10, 0]], num_digits=[2])

    scene, mask = render_scenes(_solid_digits([200, 100]), torch.tensor([2, 6]), layout)

    assert mask[0, 5, 15] == 3
    assert mask[0, 5, 30] == 0
    assert scene[0, 5, 15] == 200
    assert scene[0, 5, 30] == 100


def test_one_to_three_digits_per_scene():
    layout = draw_layout(600, num_sources=3, seed=0)
    digits = _solid_digits([255, 255, 255])

    _, masks = render_scenes(digits, torch.tensor([0, 1, 2]), layout)

    assert set(layout.num_digits.tolist()) == {1, 2, 3}
    foreground = (masks > 0).flatten(1).sum(dim=1)
    single = layout.num_digits == 1
    assert torch.all(foreground[single] == 28 * 28)  # unused slots paste nothing
    assert torch.all(foreground[~single] >= 28 * 28)
    assert torch.all(foreground <= 3 * 28 * 28)


def test_positions_cover_canvas():
    layout = draw_layout(2000, num_sources=1, seed=0)

    assert int(layout.rows.min()) == 0
    assert int(layout.rows.max()) == 64 - 28
    assert int(layout.cols.min()) == 0
    assert int(layout.cols.max()) == 64 - 28


def test_splits_draw_disjoint_sources(marked_mnist_dir):
    loaded = load_scenes({"train": 60, "val": 30, "test": 30}, val_size=FAKE_VAL_SIZE, val_seed=5,
                         data_dir=marked_mnist_dir)

    assert set(loaded["train"][0].unique().tolist()) == {0, TRAIN_INTENSITY}
    assert set(loaded["val"][0].unique().tolist()) == {0, VAL_INTENSITY}
    assert set(loaded["test"][0].unique().tolist()) == {0, TEST_INTENSITY}


def test_val_scenes_need_holdout(marked_mnist_dir):
    with pytest.raises(ValueError, match=r"data.val_scenes is 5 but data.val_size is 0"):
        load_scenes({"train": 5, "val": 5}, val_size=0, val_seed=0, data_dir=marked_mnist_dir)


def test_cache_round_trip(marked_mnist_dir, cache_dir, monkeypatch):
    first = load_scenes({"train": 20}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)["train"]
    files = list(cache_dir.glob("mnist-scenes-train-*.pt"))

    def fail(*args, **kwargs):
        raise AssertionError("the scenes were generated again instead of read from the cache")

    monkeypatch.setattr(scenes, "generate_scenes", fail)
    second = load_scenes({"train": 20}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)["train"]

    assert len(files) == 1
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_cache_key_separates_parameters(marked_mnist_dir, cache_dir):
    load_scenes({"train": 20}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)
    load_scenes({"train": 21}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)
    load_scenes({"train": 20}, val_size=FAKE_VAL_SIZE + 1, val_seed=5, data_dir=marked_mnist_dir)

    assert len(list(cache_dir.glob("mnist-scenes-train-*.pt"))) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper"])
def test_corrupt_cache_regenerated(marked_mnist_dir, cache_dir, caplog, damage):
    fresh = load_scenes({"train": 20}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)["train"]
    (path,) = cache_dir.glob("mnist-scenes-train-*.pt")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a cache file")
    else:
        content = torch.load(path, weights_only=True)
        content["masks"][0, 0, 0] = 99  # the stored checksum no longer matches
        torch.save(content, path)

    with caplog.at_level(logging.WARNING, logger="neuralab.data.scenes"):
        again = load_scenes({"train": 20}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)["train"]

    assert torch.equal(again[0], fresh[0])
    assert torch.equal(again[1], fresh[1])
    assert "generating the scenes again" in caplog.text
    rewritten = torch.load(path, weights_only=True)
    assert torch.equal(rewritten["masks"], fresh[1])


def test_unwritable_cache_still_returns_scenes(marked_mnist_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(scenes.CACHE_DIR_VARIABLE, str(blocker))

    loaded = load_scenes({"test": 5}, val_size=FAKE_VAL_SIZE, val_seed=5, data_dir=marked_mnist_dir)

    assert loaded["test"][0].shape == (5, 64, 64)
