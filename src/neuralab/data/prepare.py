"""Turn a data configuration into normalized in-memory splits: train, validation and test.

The validation images are a fixed, seeded hold-out from the training split. The test split
is kept apart and used only for the final test numbers. Four kinds of data set are prepared
here: the IDX classification sets (mnist, fashion-mnist), the mnist-scenes segmentation set,
and image folders ("folder": classification or segmentation, read from data_dir). A folder
split that exceeds the memory budget, or that is cut into random crops, is not decoded here:
it becomes a StreamedSplit that the training loader decodes from disk batch by batch.
"""

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuralab.config import DataConfig
from neuralab.data import folders, scenes, streaming
from neuralab.data.augment import mask_fill_label
from neuralab.data.batches import Augment, BatchLoader, split_validation, to_float_images
from neuralab.data.sources import get_dataset, load_split
from neuralab.data.streaming import StreamedSplit, StreamLoader

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Normalized images (N, C, H, W) float32 and their targets: int64 labels (N,) or uint8 masks (N, H, W)."""

    images: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def contains_target(self, value: int) -> bool:
        """Return whether some target equals `value`."""
        return bool((self.targets == value).any())


@dataclass(frozen=True)
class PreparedData:
    """Everything training needs to know about its data."""

    train: Split | StreamedSplit
    val: Split | StreamedSplit | None
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

    @property
    def mask_fill(self) -> int:
        """The mask label of pixels that augmentation or padding brings in from outside an image."""
        return mask_fill_label(self.ignore_index)


def build_loader(split: Split | StreamedSplit, batch_size: int, *, shuffle: bool,
                 generator: torch.Generator | None = None, augment: Augment | None = None,
                 rank: int = 0, world_size: int = 1) -> BatchLoader | StreamLoader:
    """Return the loader of `split`: a BatchLoader over memory, or a StreamLoader that reads the disk."""
    if isinstance(split, StreamedSplit):
        return StreamLoader(split, batch_size, shuffle=shuffle, generator=generator, augment=augment, rank=rank,
                            world_size=world_size)
    return BatchLoader(split.images, split.targets, batch_size, shuffle=shuffle, generator=generator,
                       augment=augment, rank=rank, world_size=world_size)


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
    size = _subset_size(size, len(labels), name)
    return images[:size], labels[:size]


def _subset_size(size: int | None, count: int, name: str) -> int:
    """Return how many of `count` items the data.`name` option keeps: all of them when it is None."""
    if size is None:
        return count
    if not 0 < size <= count:
        raise ValueError(f"data.{name} must be in 1..{count}, got {size}")
    return size


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
    if config.crop and config.dataset != folders.NAME:
        raise ValueError(f"data.crop applies to segmentation folders (--dataset folder), not to data set "
                         f"{config.dataset!r}; drop --crop")
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


def _prepare_scenes(config: DataConfig) -> PreparedData:
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
    _check_crop(config, spec, root)
    mean, std = normalization(config)
    samples = folders.split_samples(root, "train", spec)
    samples = samples[:_subset_size(config.train_subset, len(samples), "train_subset")]
    if not 0 <= config.val_size < len(samples):
        raise ValueError(f"data.val_size is {config.val_size} but {root} contains {len(samples)} training images; "
                         f"set --val-size to a number in 0..{len(samples) - 1}")
    if config.crop or not _fits_memory(len(samples), spec, config, "training"):
        train, val = _stream_folder(samples, spec, config, mean, std)
    else:
        loaded = folders.load_samples(samples, spec)
        train, val = _hold_out(loaded.images, loaded.targets, config, mean, std)
    in_shape = (spec.channels, *spec.size)
    return PreparedData(train, val, spec.classes, in_shape, mean, std, task=spec.task,
                        ignore_index=spec.ignore_index)


def _check_crop(config: DataConfig, spec: folders.FolderSpec, root: Path) -> None:
    if not config.crop:
        return
    if spec.task != "segmentation":
        raise ValueError(f"data.crop applies to segmentation folders (images/ and masks/), but {root} is a "
                         "classification folder; drop --crop, or use --image-size alone to resize")
    if config.image_size is None:
        raise ValueError("data.crop needs data.image_size, the side of the square crops in pixels; "
                         "pass --image-size")


def _fits_memory(count: int, spec: folders.FolderSpec, config: DataConfig, split: str) -> bool:
    """Return whether `count` decoded samples fit data.memory_budget_mb, and log why they are streamed if not."""
    needed = folders.decoded_bytes(count, spec)
    if needed <= config.memory_budget_mb * 2**20:
        return True
    logger.info("%s: decoding the %d %s images batch by batch from disk, because in memory they would need "
                "%.0f MiB, more than data.memory_budget_mb=%d", config.data_dir, count, split, needed / 2**20,
                config.memory_budget_mb)
    return False


def _stream_folder(samples: list[tuple[Path, Path | int]], spec: folders.FolderSpec, config: DataConfig,
                   mean: float, std: float) -> tuple[StreamedSplit, Split | StreamedSplit | None]:
    """Return the streamed training split and the validation hold-out, which stays in memory when it fits."""
    train_index, val_index = split_validation(len(samples), config.val_size, config.val_seed)
    mode = streaming.CROP if config.crop else streaming.FIXED
    train = streaming.scan_split([samples[index] for index in train_index], spec, mode,
                                 mask_fill=mask_fill_label(spec.ignore_index), mean=mean, std=std,
                                 num_workers=config.num_workers)
    if not len(val_index):
        return train, None
    return train, _evaluation_split([samples[index] for index in val_index], spec, config, mean, std, "validation")


def _evaluation_split(samples: list[tuple[Path, Path | int]], spec: folders.FolderSpec, config: DataConfig,
                      mean: float, std: float, split: str) -> Split | StreamedSplit:
    """Return validation or test samples in memory when they fit the budget, else streamed from disk.

    With data.crop, these images keep their stored size, because the crops keep the stored scale
    and a segmentation model takes any size. Images of different sizes are then streamed, in
    batches of one size.
    """
    mode = streaming.FIXED
    if config.crop:
        sizes = {folders.read_header(image_path)[1] for image_path, _ in samples}
        if len(sizes) == 1:
            spec = dataclasses.replace(spec, size=sizes.pop(), resize=False)
        else:
            mode = streaming.NATIVE
    if mode == streaming.FIXED and _fits_memory(len(samples), spec, config, split):
        loaded = folders.load_samples(samples, spec)
        return Split(to_float_images(loaded.images, mean, std), loaded.targets)
    return streaming.scan_split(samples, spec, mode, mask_fill=mask_fill_label(spec.ignore_index), mean=mean,
                                std=std, num_workers=config.num_workers)


def prepare_test_data(config: DataConfig, classes: tuple[str, ...] | None = None,
                      in_shape: tuple[int, int, int] | None = None) -> Split | StreamedSplit | None:
    """Load and normalize the test split, or return None for a folder data set without a test/ sub-folder.

    A folder's test images are converted to the trained model's `classes` and `in_shape` when
    given; otherwise these are read from the training folder. A folder's test split that does
    not fit data.memory_budget_mb is returned as a StreamedSplit.
    """
    mean, std = normalization(config)
    if config.dataset == scenes.NAME:
        loaded = scenes.load_scenes({"test": scenes.TEST_SCENES}, val_size=config.val_size,
                                    val_seed=config.val_seed, data_dir=_data_dir(config))
        images, targets = loaded["test"]
    elif config.dataset == folders.NAME:
        root = _folder_root(config)
        spec = _folder_spec(config, root, classes, in_shape)
        samples = folders.split_samples(root, "test", spec)
        if samples is None:
            return None
        samples = samples[:_subset_size(config.test_subset, len(samples), "test_subset")]
        return _evaluation_split(samples, spec, config, mean, std, "test")
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
