"""Turn a data configuration into normalized in-memory splits: train, validation and test.

The validation images are a fixed, seeded hold-out from the training split. The test split
is kept apart and used only for the final test numbers. Four kinds of data set are prepared
here: the IDX classification sets (mnist, fashion-mnist), the mnist-scenes segmentation set,
and image folders ("folder": classification or segmentation, read from data_dir).
"""

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from neuralab.config import DataConfig
from neuralab.data import folders, scenes
from neuralab.data.batches import split_validation, to_float_images
from neuralab.data.sources import get_dataset, load_split


@dataclass(frozen=True)
class Split:
    """Normalized images (N, C, H, W) float32 and their targets: int64 labels (N,) or uint8 masks (N, H, W)."""

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
    task: str = "classification"  # or "segmentation": targets are masks of class indices
    ignore_index: int | None = None  # target value left out of loss and metrics

    @property
    def background(self) -> float:
        """The normalized value of a black pixel, used to fill shifted-in borders."""
        return (0.0 - self.mean) / self.std


def normalization(config: DataConfig) -> tuple[float, float]:
    """Return (mean, std) for the configuration: its own values, or the data set's statistics."""
    if config.dataset == scenes.NAME:
        default_mean, default_std = scenes.MEAN, scenes.STD
    elif config.dataset == folders.NAME:
        default_mean, default_std = folders.MEAN, folders.STD
    else:
        dataset = get_dataset(config.dataset)
        default_mean, default_std = dataset.mean, dataset.std
    mean = default_mean if config.mean is None else config.mean
    std = default_std if config.std is None else config.std
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


def _hold_out(images: Tensor, targets: Tensor, config: DataConfig, mean: float,
              std: float) -> tuple[Split, Split | None]:
    """Normalize the images and cut the seeded validation hold-out from them."""
    train_index, val_index = split_validation(len(targets), config.val_size, config.val_seed)
    all_images = to_float_images(images, mean, std)
    train = Split(all_images[train_index], targets[train_index])
    val = Split(all_images[val_index], targets[val_index]) if len(val_index) else None
    return train, val


def prepare_training_data(config: DataConfig) -> PreparedData:
    """Load and normalize the training split and cut the validation hold-out from it."""
    if config.dataset == scenes.NAME:
        return _prepare_scenes(config)
    if config.dataset == folders.NAME:
        return _prepare_folder(config)
    dataset = get_dataset(config.dataset)
    mean, std = normalization(config)
    images, labels = load_split(dataset, "train", _data_dir(config))
    images, labels = _subset(images, labels, config.train_subset, "train_subset")
    train, val = _hold_out(images, labels, config, mean, std)
    return PreparedData(train, val, dataset.classes, dataset.in_shape, mean, std)


def _check_segmentation_augment(config: DataConfig) -> None:
    if config.augment != "none":
        raise ValueError(f"data.augment {config.augment!r} moves the images but not their masks; "
                         "segmentation data sets need --augment none")


def _prepare_scenes(config: DataConfig) -> PreparedData:
    _check_segmentation_augment(config)
    if config.train_scenes < 1 or config.val_scenes < 0:
        raise ValueError(f"data.train_scenes must be at least 1 and data.val_scenes at least 0, "
                         f"got {config.train_scenes} and {config.val_scenes}")
    mean, std = normalization(config)
    loaded = scenes.load_scenes({"train": config.train_scenes, "val": config.val_scenes},
                                val_size=config.val_size, val_seed=config.val_seed, data_dir=_data_dir(config))
    images, masks = _subset(*loaded["train"], config.train_subset, "train_subset")
    train = Split(to_float_images(images, mean, std), masks)
    val = Split(to_float_images(loaded["val"][0], mean, std), loaded["val"][1]) if config.val_scenes else None
    return PreparedData(train, val, scenes.CLASSES, scenes.IN_SHAPE, mean, std, task="segmentation")


def _folder_root(config: DataConfig) -> Path:
    if not config.data_dir:
        raise ValueError("data set 'folder' reads the images in data.data_dir; pass --data-dir FOLDER")
    return Path(config.data_dir).expanduser()


def _prepare_folder(config: DataConfig) -> PreparedData:
    root = _folder_root(config)
    spec = folders.describe(root, config.num_classes, config.image_size, config.channels)
    if spec.task == "segmentation":
        _check_segmentation_augment(config)
    mean, std = normalization(config)
    loaded = folders.load_folder_split(root, "train", spec, config.memory_budget_mb)
    images, targets = _subset(loaded.images, loaded.targets, config.train_subset, "train_subset")
    if not 0 <= config.val_size < len(targets):
        raise ValueError(f"data.val_size is {config.val_size} but {root} contains {len(targets)} training images; "
                         f"set --val-size to a number in 0..{len(targets) - 1}")
    train, val = _hold_out(images, targets, config, mean, std)
    in_shape = (spec.channels, *spec.size)
    return PreparedData(train, val, spec.classes, in_shape, mean, std, task=spec.task,
                        ignore_index=spec.ignore_index)


def prepare_test_data(config: DataConfig, classes: tuple[str, ...] | None = None,
                      in_shape: tuple[int, int, int] | None = None) -> Split | None:
    """Load and normalize the test split, or return None for a folder data set without a test/ sub-folder.

    A folder's test images are converted to the trained model's `classes` and `in_shape` when
    given; otherwise these are read from the training folder.
    """
    mean, std = normalization(config)
    if config.dataset == scenes.NAME:
        loaded = scenes.load_scenes({"test": scenes.TEST_SCENES}, val_size=config.val_size,
                                    val_seed=config.val_seed, data_dir=_data_dir(config))
        images, targets = loaded["test"]
    elif config.dataset == folders.NAME:
        root = _folder_root(config)
        spec = _folder_spec(config, root, classes, in_shape)
        loaded = folders.load_folder_split(root, "test", spec, config.memory_budget_mb)
        if loaded is None:
            return None
        images, targets = loaded.images, loaded.targets
    else:
        images, targets = load_split(get_dataset(config.dataset), "test", _data_dir(config))
    images, targets = _subset(images, targets, config.test_subset, "test_subset")
    return Split(to_float_images(images, mean, std), targets)


def _folder_spec(config: DataConfig, root: Path, classes: tuple[str, ...] | None,
                 in_shape: tuple[int, int, int] | None) -> folders.FolderSpec:
    if classes is None or in_shape is None:
        return folders.describe(root, config.num_classes, config.image_size, config.channels)
    return folders.FolderSpec(folders.find_task(root), tuple(classes), in_shape[0], tuple(in_shape[1:]),
                              resize=config.image_size is not None)
