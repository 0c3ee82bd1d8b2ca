"""Turn a data configuration into normalized in-memory splits: train, validation and test.

The validation images are a fixed, seeded hold-out from the training split. The test split
is kept apart and used only for the final test numbers.
"""

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from neuralab.config import DataConfig
from neuralab.data.batches import split_validation, to_float_images
from neuralab.data.sources import get_dataset, load_split


@dataclass(frozen=True)
class Split:
    """Normalized images (N, C, H, W) float32 and their targets."""

    images: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class PreparedData:
    """Everything training needs to know about its data."""

    train: Split
    val: Split | None
    classes: tuple[str, ...]
    in_shape: tuple[int, int, int]
    mean: float
    std: float

    @property
    def background(self) -> float:
        """The normalized value of a black pixel, used to fill shifted-in borders."""
        return (0.0 - self.mean) / self.std


def normalization(config: DataConfig) -> tuple[float, float]:
    """Return (mean, std) for the configuration: its own values, or the data set's statistics."""
    dataset = get_dataset(config.dataset)
    mean = dataset.mean if config.mean is None else config.mean
    std = dataset.std if config.std is None else config.std
    if std <= 0:
        raise ValueError(f"data.std must be positive, got {std}")
    return mean, std


def _data_dir(config: DataConfig) -> Path | None:
    return Path(config.data_dir) if config.data_dir else None


def _subset(images: Tensor, labels: Tensor, size: int | None, name: str) -> tuple[Tensor, Tensor]:
    if size is None:
        return images, labels
    if not 0 < size <= len(labels):
        raise ValueError(f"data.{name} must be in 1..{len(labels)}, got {size}")
    return images[:size], labels[:size]


def prepare_training_data(config: DataConfig) -> PreparedData:
    """Load and normalize the training split and cut the validation hold-out from it."""
    dataset = get_dataset(config.dataset)
    mean, std = normalization(config)
    images, labels = load_split(dataset, "train", _data_dir(config))
    images, labels = _subset(images, labels, config.train_subset, "train_subset")
    train_index, val_index = split_validation(len(labels), config.val_size, config.val_seed)

    all_images = to_float_images(images, mean, std)
    train = Split(all_images[train_index], labels[train_index])
    val = Split(all_images[val_index], labels[val_index]) if len(val_index) else None
    return PreparedData(train, val, dataset.classes, dataset.in_shape, mean, std)


def prepare_test_data(config: DataConfig) -> Split:
    """Load and normalize the test split."""
    dataset = get_dataset(config.dataset)
    mean, std = normalization(config)
    images, labels = load_split(dataset, "test", _data_dir(config))
    images, labels = _subset(images, labels, config.test_subset, "test_subset")
    return Split(to_float_images(images, mean, std), labels)



