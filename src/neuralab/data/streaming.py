"""Image folders read from disk batch by batch, for data sets above the memory budget and random crops.

A map-style Dataset decodes one sample per item; a torch DataLoader runs it in worker processes.
StreamLoader yields the same (normalized images, targets) batches as the in-memory BatchLoader:
the seeded order, per-rank sharding and augmentation are drawn in the training process from
the session's generator, and the workers only decode, resize or crop.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from neuralab.data import folders
from neuralab.data.batches import Augment, RankBatches, augment_share, shard_bounds, to_float_images

# Modes of a streamed split: how its images are brought to one size.
FIXED = "fixed"  # resized to the spec's size, or required to have it when the spec does not resize
CROP = "crop"  # a random crop of the spec's size at the stored scale, padded where the image is smaller
NATIVE = "native"  # each image keeps its stored size, and a batch contains images of one size only
MODES = (FIXED, CROP, NATIVE)
MAX_DEFAULT_WORKERS = 2  # leaves the other cores to training; --num-workers sets more for slow decoding
# Seed of the DataLoader's own generator, which seeds each worker's random-number generators. The
# workers draw no random numbers, because crops are seeded per sample, so the value only keeps
# the DataLoader from drawing from the global generator that dropout uses.
WORKER_SEED = 0
CROP_SEED_LIMIT = 2**31 - 1


def default_num_workers() -> int:
    """Return the default number of decoding processes: min(2, CPU count)."""
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


@dataclass(frozen=True)
class StreamedSplit:
    """A folder split whose samples are decoded from disk per batch instead of held in memory."""

    samples: tuple[tuple[Path, Path | int], ...]  # (image, mask path or class index)
    spec: folders.FolderSpec
    mode: str  # FIXED, CROP or NATIVE
    sizes: tuple[tuple[int, int], ...]  # (height, width) of each image as stored
    target_values: frozenset[int]  # every class index or mask value, read before training
    mask_fill: int  # mask label of the padding that a random crop adds
    mean: float
    std: float
    num_workers: int

    def __len__(self) -> int:
        return len(self.samples)

    def contains_target(self, value: int) -> bool:
        """Return whether some target equals `value`, counting the padding of crops larger than an image."""
        if value in self.target_values:
            return True
        crop_height, crop_width = self.spec.size
        padded = any(height < crop_height or width < crop_width for height, width in self.sizes)
        return self.mode == CROP and value == self.mask_fill and padded


def scan_split(samples: list[tuple[Path, Path | int]], spec: folders.FolderSpec, mode: str, *, mask_fill: int,
               mean: float, std: float, num_workers: int | None) -> StreamedSplit:
    """Check every sample before training and return the split to stream.

    Image sizes come from the file headers. Masks are decoded once, so a mask value outside the
    class range or a mask of the wrong size stops the run here rather than in the middle of an
    epoch. NOTE: image pixels are decoded only during training, so a file that is damaged after
    its header still fails mid-epoch.
    """
    if mode not in MODES:
        raise ValueError(f"unknown streaming mode {mode!r}; valid modes: {', '.join(MODES)}")
    num_workers = default_num_workers() if num_workers is None else num_workers
    if num_workers < 0:
        raise ValueError(f"data.num_workers must be 0 or more, got {num_workers}")
    sizes, values = [], set()
    for image_path, target in samples:
        size = folders.read_header(image_path)[1]
        if mode == FIXED:
            folders.check_image_size(image_path, size, spec)
        if isinstance(target, Path):
            mask = folders.map_mask(folders.read_mask(target), len(spec.classes), target)
            folders.check_mask_size(target, tuple(mask.shape), image_path, size)
            values.update(mask.unique().tolist())
        else:
            values.add(target)
        sizes.append(size)
    return StreamedSplit(tuple(samples), spec, mode, tuple(sizes), frozenset(values), mask_fill, mean, std,
                         num_workers)


class FolderDataset(Dataset):
    """Decode one sample of a streamed split: item (index, crop seed) -> (image uint8 (C, H, W), target)."""

    def __init__(self, split: StreamedSplit) -> None:
        self.split = split
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: split.mask_fill}  # black image padding, like shifts
        self.crop = v2.RandomCrop(split.spec.size, pad_if_needed=True, fill=fill)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, Tensor | int]:
        index, crop_seed = item
        image_path, target = self.split.samples[index]
        if self.split.mode == FIXED:
            return folders.load_sample(image_path, target, self.split.spec)
        image, target = folders.decode_sample(image_path, target, self.split.spec)
        if self.split.mode == NATIVE:
            return image, target
        # The seed comes from the training process, so a crop depends neither on the worker that
        # decodes it nor on the global generator, which fork_rng restores afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(crop_seed)
            if isinstance(target, Tensor):
                image, mask = self.crop(tv_tensors.Image(image), tv_tensors.Mask(target.unsqueeze(0)))
                return image.as_subclass(Tensor), mask.as_subclass(Tensor).squeeze(0)  # (1, H, W) -> (H, W)
            return self.crop(tv_tensors.Image(image)).as_subclass(Tensor), target


class _PlannedBatches(Sampler[list[tuple[int, int]]]):
    """The batches of (index, crop seed) that the loader planned for the current epoch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _random_order(shuffle: bool, crop: bool) -> str | None:
    """Return what draws from a StreamLoader's generator, as RankBatches names it, or None."""
    drawn = [name for name, used in (("shuffling", shuffle), ("cropping", crop)) if used]
    return " and ".join(drawn) or None


class StreamLoader(RankBatches):
    """Yield (images, targets) batches of a streamed split, decoded by DataLoader workers.

    The arguments and batches match BatchLoader's: normalized float images (B, C, H, W) and
    int64 labels (B,) or uint8 masks (B, H, W), and this rank decodes only its share of each
    global batch.
    """

    def __init__(self, split: StreamedSplit, batch_size: int, *, shuffle: bool,
                 generator: torch.Generator | None = None, augment: Augment | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__(batch_size, shuffle=shuffle, generator=generator, augment=augment, rank=rank,
                         world_size=world_size, random_order=_random_order(shuffle, split.mode == CROP))
        if shuffle and split.mode == NATIVE:
            raise ValueError("a split of images at their own sizes is batched by size in file order; "
                             "it cannot be shuffled")
        self.split = split
        self._planned = _PlannedBatches()
        workers = split.num_workers
        self._loader = DataLoader(FolderDataset(split), batch_sampler=self._planned, num_workers=workers,
                                  persistent_workers=workers > 0,
                                  generator=torch.Generator().manual_seed(WORKER_SEED))

    def __len__(self) -> int:
        return len(self.global_batch_sizes())

    def global_batch_sizes(self) -> list[int]:
        """Return the size of each step's global batch, across all ranks."""
        return [len(batch) for batch in self._global_batches(torch.arange(len(self.split)))]

    def _global_batches(self, order: Tensor) -> list[Tensor]:
        """Cut `order` into global batches; at their own sizes, a batch holds only images of one size."""
        if self.split.mode != NATIVE:
            return list(order.split(self.global_batch_size))
        batches, run = [], [int(order[0])] if len(order) else []
        for index in order[1:].tolist():
            if len(run) == self.global_batch_size or self.split.sizes[index] != self.split.sizes[run[0]]:
                batches.append(torch.tensor(run))
                run = []
            run.append(index)
        return batches + ([torch.tensor(run)] if run else [])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        count = len(self.split)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else torch.arange(count)
        batches = self._global_batches(order)
        crop_seeds = [0] * count
        if self.split.mode == CROP:
            crop_seeds = torch.randint(0, CROP_SEED_LIMIT, (count,), generator=self.generator).tolist()
        shares = [shard_bounds(len(batch), self.rank, self.world_size) for batch in batches]
        # Set before iter(): the DataLoader starts decoding the first batches as soon as it is iterated.
        self._planned.batches = [[(index, crop_seeds[index]) for index in batch[first:last].tolist()]
                                 for batch, (first, last) in zip(batches, shares) if last > first]
        decoded = iter(self._loader)
        for batch, (first, last) in zip(batches, shares):
            images, targets = next(decoded) if last > first else self._empty_batch(int(batch[0]))
            images = to_float_images(images, self.split.mean, self.split.std)
            if self.augment is not None:
                images, targets = augment_share(self.augment, images, targets, len(batch), (first, last),
                                                self.generator)
            yield images, targets

    def _empty_batch(self, index: int) -> tuple[Tensor, Tensor]:
        """Return this rank's empty share of a batch smaller than the number of ranks."""
        spec = self.split.spec
        height, width = self.split.sizes[index] if self.split.mode == NATIVE else spec.size
        images = torch.empty(0, spec.channels, height, width, dtype=torch.uint8)
        if spec.task == "segmentation":
            return images, torch.empty(0, height, width, dtype=torch.uint8)
        return images, torch.empty(0, dtype=torch.int64)

