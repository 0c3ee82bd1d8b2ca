"""Tests for IDX reading: round trips, gzip detection, and an error naming the file for every defect."""

import gzip
import re
import struct

import pytest
import torch

from conftest import idx_bytes, write_idx, write_split
from neuralab.data.idx import DataFileError, read_idx, read_images_and_labels
from neuralab.data.sources import MNIST, find_split_files, load_split


def _images(count: int = 3, height: int = 28, width: int = 28) -> torch.Tensor:
    generator = torch.Generator().manual_seed(count)
    return torch.randint(0, 256, (count, height, width), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "raw"])
def test_round_trip(tmp_path, compressed):
    images = _images()
    path = write_idx(tmp_path / "images.idx", images, gzip=compressed)

    loaded = read_idx(path, expected_dims=3)

    assert loaded.dtype == torch.uint8
    assert torch.equal(loaded, images)


def test_header_written_big_endian(tmp_path):
    path = write_idx(tmp_path / "labels", torch.tensor([7, 2, 1], dtype=torch.uint8), gzip=False)

    # magic 0x00000801, one dimension of size 3, then the labels
    assert path.read_bytes() == b"\x00\x00\x08\x01" + b"\x00\x00\x00\x03" + bytes([7, 2, 1])


def test_gzip_detected_by_bytes(tmp_path):
    images = _images(2)
    compressed = write_idx(tmp_path / "images-idx3-ubyte", images, gzip=True)
    raw = write_idx(tmp_path / "images-idx3-ubyte.gz", images, gzip=False)

    assert torch.equal(read_idx(compressed), images)
    assert torch.equal(read_idx(raw), images)


def test_pair_round_trip(tmp_path):
    images, labels = _images(4), torch.tensor([0, 9, 3, 3])
    images_path, labels_path = write_split(tmp_path, "train", images, labels)

    loaded_images, loaded_labels = read_images_and_labels(images_path, labels_path, num_classes=10)

    assert torch.equal(loaded_images, images)
    assert loaded_labels.dtype == torch.int64
    assert torch.equal(loaded_labels, labels)


def test_empty_file_round_trip(tmp_path):
    path = write_idx(tmp_path / "labels", torch.zeros(0, dtype=torch.uint8), gzip=False)

    loaded = read_idx(path, expected_dims=1)

    assert loaded.shape == (0,)


def test_bad_magic(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">I", 0x00000D03) + bytes(16))  # type 0x0D is float32

    with pytest.raises(DataFileError, match=re.escape(f"{path}: expected the IDX magic number 0x000008NN "
                                                      "(unsigned bytes), found 0x00000d03")):
        read_idx(path)


def test_wrong_dims(tmp_path):
    path = write_idx(tmp_path / "labels.gz", torch.tensor([1, 2], dtype=torch.uint8))

    with pytest.raises(DataFileError, match=re.escape(f"{path}: expected 3 dimensions, found 1")):
        read_idx(path, expected_dims=3)


def test_header_too_short(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00")

    with pytest.raises(DataFileError, match=re.escape(f"{path}: expected an IDX header of at least 4 bytes, "
                                                      "found 2 bytes")):
        read_idx(path)


def test_truncated_file(tmp_path):
    data = idx_bytes(_images(2))
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(data[:-10]))

    # 16 header bytes plus 2 * 28 * 28 pixels = 1584 bytes expected.
    with pytest.raises(DataFileError, match=re.escape(f"{path}: expected 1584 bytes for shape (2, 28, 28), "
                                                      "found 1574 (the file is truncated")):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(_images(2))[:10])

    with pytest.raises(DataFileError, match=re.escape(f"{path}: expected a 16-byte header, found 10 bytes")):
        read_idx(path)


def test_extra_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(torch.tensor([1, 2, 3], dtype=torch.uint8)) + b"\x00")

    with pytest.raises(DataFileError, match=re.escape(f"{path}: expected 11 bytes for shape (3,), found 12 "
                                                      "(the file is truncated or has extra bytes)")):
        read_idx(path)


def test_label_count_mismatch(tmp_path):
    images_path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images(3))
    labels_path = write_idx(tmp_path / "other-labels-idx1-ubyte.gz", torch.tensor([1, 2], dtype=torch.uint8))

    message = (f"{labels_path}: expected 3 labels to match {images_path}, found 2; "
               "the label file belongs to another image file")
    with pytest.raises(DataFileError, match=re.escape(message)):
        read_images_and_labels(images_path, labels_path, num_classes=10)


def test_label_out_of_range(tmp_path):
    images_path, labels_path = write_split(tmp_path, "train", _images(3), torch.tensor([1, 10, 2]))

    with pytest.raises(DataFileError, match=re.escape(f"{labels_path}: expected labels in 0..9, found 10")):
        read_images_and_labels(images_path, labels_path, num_classes=10)


def test_missing_file(tmp_path):
    path = tmp_path / "absent-images-idx3-ubyte.gz"

    with pytest.raises(DataFileError, match=re.escape(f"{path}: file not found")):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(_images(2)))[:100])

    with pytest.raises(DataFileError, match=re.escape(f"{path}: corrupt or truncated gzip data")):
        read_idx(path)


def test_split_files_found_raw_or_gzip(tmp_path):
    write_split(tmp_path, "train", _images(2), torch.tensor([4, 5]), gzip=False)
    write_split(tmp_path, "t10k", _images(1), torch.tensor([6]), gzip=True)

    train_images, train_labels = find_split_files(MNIST, "train", tmp_path)
    test_images, _ = find_split_files(MNIST, "test", tmp_path)

    assert train_images == tmp_path / "train-images-idx3-ubyte"
    assert train_labels == tmp_path / "train-labels-idx1-ubyte"
    assert test_images == tmp_path / "t10k-images-idx3-ubyte.gz"


def test_split_missing_label_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images(2))

    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: found one train file but not "
                                                          "train-labels-idx1-ubyte(.gz)")):
        load_split(MNIST, "train", tmp_path)


def test_split_wrong_image_size(tmp_path):
    images_path, _ = write_split(tmp_path, "t10k", _images(2, height=14, width=14), torch.tensor([1, 2]))

    with pytest.raises(DataFileError, match=re.escape(f"{images_path}: expected 28x28 images, found 14x14")):
        load_split(MNIST, "test", tmp_path)
