"""Tests for image-folder data sets: mode conversion, mask values through resizing, 0/255 and 255 handling."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuralab.config import DataConfig
from neuralab.data import folders
from neuralab.data.prepare import Split, prepare_test_data, prepare_training_data
from neuralab.data.streaming import StreamedSplit

# A palette whose colours are nothing like the indices, so reading luminance instead of indices shows.
PALETTE = [0, 0, 0, 200, 30, 30, 30, 200, 30, 30, 30, 200] + [255, 255, 255] * 252


def write_palette_mask(path: Path, values: np.ndarray) -> Path:
    """Write class indices as a palette (mode P) PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.frombytes("P", (values.shape[1], values.shape[0]), values.astype(np.uint8).tobytes())
    mask.putpalette(PALETTE)
    mask.save(path)
    return path


def write_gray_mask(path: Path, values: np.ndarray) -> Path:
    """Write class indices as a grayscale (mode L) PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)
    return path


def write_image(path: Path, mode: str, size: tuple[int, int] = (6, 4), color=None) -> Path:
    """Write a solid image of `mode` and `size` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    defaults = {"L": 100, "RGB": (10, 20, 30), "RGBA": (10, 20, 30, 255), "LA": (100, 255), "P": 1}
    image = Image.new(mode, size, defaults[mode] if color is None else color)
    if mode == "P":
        image.putpalette(PALETTE)
    image.save(path)
    return path


def _segmentation_folder(root: Path, masks: dict[str, np.ndarray], num_classes: int | None = None) -> Path:
    for stem, values in masks.items():
        write_image(root / "images" / f"{stem}.png", "RGB", size=(values.shape[1], values.shape[0]))
        write_palette_mask(root / "masks" / f"{stem}.png", values)
    if num_classes is not None:
        (root / "classes.txt").write_text("".join(f"class{index}\n" for index in range(num_classes)))
    return root


def _config(root: Path, **values) -> DataConfig:
    return DataConfig(dataset="folder", data_dir=str(root), val_size=values.pop("val_size", 0), **values)


def test_convert_modes_to_rgb():
    transparent = Image.new("RGBA", (2, 1), (10, 20, 30, 255))
    transparent.putpixel((1, 0), (10, 20, 30, 0))

    gray = folders.convert_image(Image.new("L", (2, 1), 100), channels=3)
    composited = folders.convert_image(transparent, channels=3)

    assert gray.shape == (3, 1, 2)
    assert gray[:, 0, 0].tolist() == [100, 100, 100]
    assert composited[:, 0, 0].tolist() == [10, 20, 30]
    assert composited[:, 0, 1].tolist() == [255, 255, 255]  # fully transparent becomes white


def test_convert_modes_to_gray():
    rgb = folders.convert_image(Image.new("RGB", (3, 2), (255, 0, 0)), channels=1)
    palette = Image.new("P", (3, 2), 2)
    palette.putpalette(PALETTE)

    converted = folders.convert_image(palette, channels=1)

    assert rgb.shape == (1, 2, 3)
    assert rgb[0, 0, 0] == 76  # ITU-R 601 luma of pure red: 0.299 * 255
    assert converted.shape == (1, 2, 3)
    assert converted[0, 0, 0] == round(0.299 * 30 + 0.587 * 200 + 0.114 * 30)  # palette colour 2, not index 2


def test_classification_folder_mixed_modes(tmp_path):
    root = tmp_path / "shapes"
    write_image(root / "circle" / "a.png", "RGB")
    write_image(root / "circle" / "b.png", "L")
    write_image(root / "square" / "c.png", "RGBA")
    write_image(root / "square" / "d.png", "P")

    data = prepare_training_data(_config(root))

    assert data.task == "classification"
    assert data.classes == ("circle", "square")
    assert data.in_shape == (3, 4, 6)
    assert data.train.images.shape == (4, 3, 4, 6)
    assert data.train.targets.tolist() == [0, 0, 1, 1]
    assert data.ignore_index is None


def test_classes_sorted_by_folder_name(tmp_path):
    root = tmp_path / "letters"
    for name in ("b", "c", "a"):
        write_image(root / name / "x.png", "L")

    data = prepare_training_data(_config(root))

    assert data.classes == ("a", "b", "c")
    assert data.in_shape[0] == 1  # every image grayscale


def test_channels_from_config(tmp_path):
    root = tmp_path / "letters"
    write_image(root / "a" / "x.png", "RGB")
    write_image(root / "b" / "y.png", "RGB")

    data = prepare_training_data(_config(root, channels=1))

    assert data.in_shape == (1, 4, 6)


def test_image_size_resizes(tmp_path):
    root = tmp_path / "letters"
    write_image(root / "a" / "x.png", "RGB", size=(10, 7))
    write_image(root / "b" / "y.png", "RGB", size=(5, 9))

    data = prepare_training_data(_config(root, image_size=8))

    assert data.train.images.shape == (2, 3, 8, 8)


def test_different_sizes_need_image_size(tmp_path):
    root = tmp_path / "letters"
    write_image(root / "a" / "x.png", "RGB", size=(10, 7))
    write_image(root / "b" / "y.png", "RGB", size=(5, 9))

    with pytest.raises(ValueError, match=r"y\.png: image is 9x5 but the first training image is 7x10.*--image-size"):
        prepare_training_data(_config(root))


@pytest.mark.parametrize("writer", [write_palette_mask, write_gray_mask])
def test_mask_read_without_conversion(tmp_path, writer):
    values = np.array([[0, 1, 2], [2, 1, 0]])
    path = writer(tmp_path / "mask.png", values)

    read = folders.read_mask(path)

    assert read.tolist() == values.tolist()


def test_mask_values_kept_through_resize(tmp_path):
    values = np.array([[0, 1, 2, 2], [1, 1, 0, 2], [2, 0, 0, 1], [0, 2, 1, 1]])
    root = _segmentation_folder(tmp_path / "seg", {"a": values}, num_classes=3)

    upscaled = prepare_training_data(_config(root, image_size=8)).train.targets[0]
    downscaled = prepare_training_data(_config(root, image_size=3)).train.targets[0]

    expected = torch.from_numpy(values).repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
    assert torch.equal(upscaled.long(), expected)  # nearest neighbours: each index copied into a 2x2 block
    assert set(downscaled.unique().tolist()) <= {0, 1, 2}


def test_binary_masks_0_255_mapped(tmp_path):
    values = np.array([[0, 255, 255], [0, 0, 255]])
    root = _segmentation_folder(tmp_path / "seg", {"a": values, "b": 255 - values})

    data = prepare_training_data(_config(root, num_classes=2))

    assert data.task == "segmentation"
    assert data.ignore_index is None
    assert data.classes == ("0", "1")
    assert data.train.targets[0].tolist() == [[0, 1, 1], [0, 0, 1]]
    assert data.train.targets[1].tolist() == [[1, 0, 0], [1, 1, 0]]


def test_multiclass_255_kept_as_ignore(tmp_path):
    values = np.array([[0, 1, 255], [2, 255, 0]])
    root = _segmentation_folder(tmp_path / "seg", {"a": values}, num_classes=3)

    data = prepare_training_data(_config(root))

    assert data.ignore_index == 255
    assert data.classes == ("class0", "class1", "class2")
    assert data.train.targets[0].tolist() == values.tolist()


def test_out_of_range_mask_value(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"good": np.zeros((2, 2)), "bad": np.array([[0, 7], [1, 2]])},
                                num_classes=3)

    with pytest.raises(ValueError, match=r"bad\.png: mask value 7 is out of range for 3 classes "
                       r"\(valid values: 0\.\.2 and 255 for pixels to ignore\)"):
        prepare_training_data(_config(root))


def test_binary_out_of_range_mask_value(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"bad": np.array([[0, 2], [1, 255]])})

    with pytest.raises(ValueError, match=r"bad\.png: mask value 2 is out of range for 2 classes "
                       r"\(valid values: 0\.\.1 and 255 for class 1\)"):
        prepare_training_data(_config(root, num_classes=2))


def test_class_count_required(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((2, 2))})

    with pytest.raises(ValueError, match=r"number of mask classes is unknown; set data.num_classes"):
        prepare_training_data(_config(root))


def test_class_count_disagreement(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((2, 2))}, num_classes=3)

    with pytest.raises(ValueError, match=r"classes.txt lists 3 classes but data.num_classes is 4"):
        prepare_training_data(_config(root, num_classes=4))


def test_unpaired_image_rejected(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((2, 2))}, num_classes=3)
    write_image(root / "images" / "lonely.png", "RGB", size=(2, 2))

    with pytest.raises(ValueError, match=r"lonely\.png: not paired with exactly one file of the same stem"):
        prepare_training_data(_config(root))


def test_mask_size_must_match_image(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((2, 2))}, num_classes=3)
    write_palette_mask(root / "masks" / "a.png", np.zeros((3, 2)))

    with pytest.raises(ValueError, match=r"a\.png: mask is 3x2 but its image a\.png is 2x2"):
        prepare_training_data(_config(root))


def test_test_subfolder_is_test_split(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((4, 4)), "b": np.ones((4, 4))}, num_classes=3)
    _segmentation_folder(root / "test", {"c": np.full((4, 4), 2)})

    data = prepare_training_data(_config(root, val_size=1))
    test = prepare_test_data(_config(root), data.classes, data.in_shape)

    assert len(data.train) == 1
    assert len(data.val) == 1
    assert len(test) == 1
    assert test.targets[0].unique().tolist() == [2]


def test_no_test_subfolder_means_no_test_split(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((4, 4))}, num_classes=3)

    assert prepare_test_data(_config(root)) is None


def test_val_size_must_fit_folder(tmp_path):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((4, 4))}, num_classes=3)

    with pytest.raises(ValueError, match=r"data.val_size is 5000 but .* contains 1 training images"):
        prepare_training_data(_config(root, val_size=5000))


def test_memory_budget_exceeded_streams(tmp_path):
    root = tmp_path / "big"
    write_image(root / "a" / "x.png", "RGB", size=(600, 600))  # 4.1 MiB as float32

    in_memory = prepare_training_data(_config(root, memory_budget_mb=5))
    streamed = prepare_training_data(_config(root, memory_budget_mb=4))

    assert isinstance(in_memory.train, Split)
    assert isinstance(streamed.train, StreamedSplit)


@pytest.mark.parametrize(("num_classes", "fill"), [(3, 255), (2, 0)])
def test_mask_augment_fill_label(tmp_path, num_classes, fill):
    root = _segmentation_folder(tmp_path / "seg", {"a": np.zeros((4, 4))}, num_classes=num_classes)

    data = prepare_training_data(_config(root, augment="shift"))

    assert data.mask_fill == fill


def test_unreadable_image_named(tmp_path):
    root = tmp_path / "letters"
    write_image(root / "a" / "x.png", "RGB")
    (root / "b").mkdir()
    (root / "b" / "broken.png").write_bytes(b"not a png")

    with pytest.raises(ValueError, match=r"broken\.png: cannot read the image"):
        prepare_training_data(_config(root))
