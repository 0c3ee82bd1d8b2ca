"""Shared test helpers: IDX files in the real on-disk format, a tiny MNIST folder built from them, and a
tiny trained mnist-mlp run.

An IDX file is a 4-byte magic number (0x0000, type 0x08 for unsigned bytes, the number of
dimensions), one big-endian uint32 per dimension, then the bytes in row-major order.
"""

import gzip as gzip_module
import struct
from pathlib import Path

import pytest
import torch

from neuralab.cli import main
from neuralab.data.sources import MNIST, load_split

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, 28, 28)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)

# Sizes of the tiny MNIST copy: enough for a few batches, small enough to train in well under a second.
TINY_TRAIN_IMAGES = 600
TINY_TEST_IMAGES = 200


def idx_bytes(array: torch.Tensor) -> bytes:
    """Return the uncompressed IDX encoding of a uint8 tensor of 1 to 255 dimensions."""
    if array.dtype != torch.uint8:
        raise TypeError(f"IDX test files hold uint8 data, got {array.dtype}")
    header = struct.pack(">I", 0x00000800 | array.dim())
    header += struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.contiguous().numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor, gzip: bool = True) -> Path:
    """Write `array` as an IDX file at `path`, gzip-compressed unless `gzip` is False; return `path`."""
    path = Path(path)
    data = idx_bytes(array)
    path.write_bytes(gzip_module.compress(data) if gzip else data)
    return path


def write_split(folder: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor,
                gzip: bool = True) -> tuple[Path, Path]:
    """Write `prefix`-images-idx3-ubyte(.gz) and `prefix`-labels-idx1-ubyte(.gz) into `folder`."""
    suffix = ".gz" if gzip else ""
    images_path = write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gzip)
    labels_path = write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels.to(torch.uint8), gzip)
    return images_path, labels_path


@pytest.fixture(scope="session")
def mnist_slice() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The first real MNIST images of each split, as (images uint8 (N, 28, 28), labels int64 (N,))."""
    train_images, train_labels = load_split(MNIST, "train")
    test_images, test_labels = load_split(MNIST, "test")
    return {
        "train": (train_images[:TINY_TRAIN_IMAGES].clone(), train_labels[:TINY_TRAIN_IMAGES].clone()),
        "test": (test_images[:TINY_TEST_IMAGES].clone(), test_labels[:TINY_TEST_IMAGES].clone()),
    }


@pytest.fixture
def mnist_dir(tmp_path: Path, mnist_slice) -> Path:
    """A data folder holding 600 training and 200 test MNIST images as gzip-compressed IDX files."""
    folder = tmp_path / "mnist-data"
    folder.mkdir()
    write_split(folder, "train", *mnist_slice["train"])
    write_split(folder, "t10k", *mnist_slice["test"])
    return folder


# Train flags of the shared `mlp_run`: the first 600 training images of the built-in MNIST (500
# training, 100 validation) and its first 200 test images, batch 64, so 8 steps per epoch, with
# layer statistics recorded at every step.
TINY_RUN_FLAGS = ["--epochs", "2", "--train-subset", "600", "--val-size", "100", "--test-subset", "200",
                  "--batch-size", "64", "--stats-every", "1"]


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    """A finished 2-epoch mnist-mlp run with its report, trained once per session by `neuralab train`."""
    output_dir = tmp_path_factory.mktemp("runs")
    status = main(["train", "mnist-mlp", *TINY_RUN_FLAGS, "--output-dir", str(output_dir)])
    assert status == 0
    (run_dir,) = output_dir.iterdir()
    return run_dir
