"""Where the built-in data sets live: embedded MNIST, Debian's Fashion-MNIST, or a folder the user names.

A data folder holds the four IDX files under their original names, gzip-compressed or not:
train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from neuralab.data.idx import DataFileError, read_images_and_labels
from neuralab.registry import Registry

DATA_DIR_VARIABLE = "NEURALAB_DATA_DIR"
EMBEDDED_MNIST = Path(__file__).parent / "mnist"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

SPLIT_PREFIX = {"train": "train", "test": "t10k"}

DATASETS = Registry("dataset")


@dataclass(frozen=True)
class IdxDataset:
    """A built-in IDX data set: its classes, pixel statistics and default folders."""

    name: str
    classes: tuple[str, ...]
    mean: float  # pixel mean of the training images, scaled to [0, 1]
    std: float  # pixel standard deviation of the training images, scaled to [0, 1]
    default_dirs: tuple[Path, ...]
    install_hint: str

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)


MNIST = IdxDataset(
    name="mnist",
    classes=tuple(str(digit) for digit in range(10)),
    mean=0.1307,  # the commonly quoted MNIST training statistics
    std=0.3081,
    default_dirs=(EMBEDDED_MNIST,),
    install_hint="MNIST ships inside the package; reinstall neuralab if its files are missing",
)
FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    mean=0.2860,  # computed over the 60,000 Fashion-MNIST training images
    std=0.3530,
    default_dirs=(DEBIAN_FASHION_MNIST,),
    install_hint=f"install it with `apt-get install dataset-fashion-mnist`, pass --data-dir with a folder "
    f"holding its four IDX files, or set {DATA_DIR_VARIABLE} to a folder with a fashion-mnist/ sub-folder",
)
for _dataset in (MNIST, FASHION_MNIST):
    DATASETS.register(_dataset.name, f"{len(_dataset.classes)} classes, 28x28 grayscale")(lambda d=_dataset: d)


def _candidate_dirs(dataset: IdxDataset, data_dir: Path | None) -> list[Path]:
    """Return the folders to search, most specific first.

    An explicit data_dir is searched as given and in its sub-folder named after the data
    set. $NEURALAB_DATA_DIR serves every data set, so only its sub-folder named after the
    data set counts (fashion-mnist/, mnist/); otherwise MNIST and Fashion-MNIST, which use
    the same file names, could be swapped without a word.
    """
    if data_dir is not None:
        chosen = Path(data_dir).expanduser()
        return [chosen / dataset.name, chosen]
    shared = os.environ.get(DATA_DIR_VARIABLE)
    shared_dirs = [Path(shared).expanduser() / dataset.name] if shared else []
    return shared_dirs + list(dataset.default_dirs)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_split_files(dataset: IdxDataset, split: str, data_dir: Path | None = None) -> tuple[Path, Path]:
    """Return the (images, labels) IDX paths of `split`, or raise FileNotFoundError naming the places searched."""
    prefix = SPLIT_PREFIX[split]
    image_stem, label_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    folders = _candidate_dirs(dataset, data_dir)
    for folder in folders:
        images, labels = _find_file(folder, image_stem), _find_file(folder, label_stem)
        if images and labels:
            return images, labels
        if images or labels:
            missing = label_stem if images else image_stem
            raise FileNotFoundError(f"{folder}: found one {split} file but not {missing}(.gz); {dataset.install_hint}")
    searched = ", ".join(str(folder) for folder in folders)
    hint = (f"check --data-dir {data_dir}: it must hold the four IDX files" if data_dir is not None
            else dataset.install_hint)
    raise FileNotFoundError(f"{dataset.name}: {image_stem}(.gz) not found in {searched}; {hint}")


def load_split(dataset: IdxDataset, split: str, data_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images (N, 28, 28) uint8, labels (N,) int64) of the train or test split."""
    if split not in SPLIT_PREFIX:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_PREFIX)}")
    images_path, labels_path = find_split_files(dataset, split, data_dir)
    images, labels = read_images_and_labels(images_path, labels_path, num_classes=len(dataset.classes))
    if tuple(images.shape[1:]) != dataset.in_shape[1:]:
        raise DataFileError(f"{images_path}: expected {dataset.in_shape[1]}x{dataset.in_shape[2]} images, "
                            f"found {images.shape[1]}x{images.shape[2]}")
    return images, labels


def get_dataset(name: str) -> IdxDataset:
    """Return the built-in data set registered as `name`."""
    return DATASETS.build(name)
