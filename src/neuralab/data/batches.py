"""In-memory batching: a seeded validation hold-out, seeded shuffling, and sharding per rank.

Images are normalized once into one float tensor, so a batch is an index into memory and
never a per-sample decode. Augmentation works on whole batches.
"""

import math
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor


class Augment(Protocol):
    """Per-image random augmentation, drawn for a whole global batch and applied to a share of it."""

    def draw(self, count: int, generator: torch.Generator) -> Tensor: ...

    def apply(self, images: Tensor, parameters: Tensor) -> Tensor: ...

    def apply_masks(self, masks: Tensor, parameters: Tensor) -> Tensor: ...


def to_float_images(images: Tensor, mean: float, std: float) -> Tensor:
    """Return uint8 images (N, H, W) or (N, C, H, W) as normalized float32 (N, C, H, W)."""
    if images.dim() == 3:
        images = images.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    return (images.float().div_(255.0) - mean).div_(std)


def split_validation(count: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Return (train indices, validation indices): a fixed random hold-out of `val_size` items."""
    if not 0 <= val_size < count:
        raise ValueError(f"val_size must be in [0, {count}) for {count} training images, got {val_size}; "
                         f"pass --val-size with a smaller number, e.g. --val-size {count // 10}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


class RankBatches:
    """The batching settings that BatchLoader and StreamLoader share: batch size, order, augmentation and rank.

    With `world_size` > 1, each global batch of `batch_size * world_size` samples is cut into
    equal parts and this rank yields part `rank`, so N processes together see the same batches
    as one process with N times the batch size.
    """

    def __init__(self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
                 augment: Augment | None, rank: int, world_size: int, random_order: str | None) -> None:
        """Check and keep the settings. `random_order` names what draws from `generator` ("shuffling"), if anything."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if random_order is not None and generator is None:
            raise ValueError(f"a {random_order} {type(self).__name__} needs a seeded torch.Generator")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment
        self.rank = rank
        self.world_size = world_size

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size


class BatchLoader(RankBatches):
    """Yield (images, targets) batches from tensors in memory, sharded per rank as RankBatches describes."""

    def __init__(self, images: Tensor, targets: Tensor, batch_size: int, *, shuffle: bool,
                 generator: torch.Generator | None = None, augment: Augment | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        if len(images) != len(targets):
            raise ValueError(f"got {len(images)} images but {len(targets)} targets")
        super().__init__(batch_size, shuffle=shuffle, generator=generator, augment=augment, rank=rank,
                         world_size=world_size, random_order="shuffling" if shuffle else None)
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.global_batch_size)

    def global_batch_sizes(self) -> list[int]:
        """Return the size of each step's global batch, across all ranks; only the last can be short."""
        count = len(self.images)
        return [min(self.global_batch_size, count - start) for start in range(0, count, self.global_batch_size)]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        count = len(self.images)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else None
        for start in range(0, count, self.global_batch_size):
            stop = min(start + self.global_batch_size, count)
            first, last = shard_bounds(stop - start, self.rank, self.world_size)
            if order is None:
                images = self.images[start + first:start + last]
                targets = self.targets[start + first:start + last]
            else:
                indices = order[start + first:start + last]
                images = self.images.index_select(0, indices)
                targets = self.targets.index_select(0, indices)
            if self.augment is not None:
                images, targets = augment_share(self.augment, images, targets, stop - start, (first, last),
                                                self.generator)
            yield images, targets


def augment_share(augment: Augment, images: Tensor, targets: Tensor, global_size: int, share: tuple[int, int],
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw parameters for a whole global batch and augment this rank's `share` [first, last) of it.

    Every rank draws for the whole global batch, so all ranks stay in step. Segmentation masks
    (B, H, W) move with their images; class labels (B,) stay as they are.
    """
    parameters = augment.draw(global_size, generator)
    first, last = share
    if last == first:  # a rank's share is empty when the batch has fewer samples than ranks
        return images, targets
    images = augment.apply(images, parameters[first:last])
    if targets.dim() == 3:
        targets = augment.apply_masks(targets, parameters[first:last])
    return images, targets


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Return [first, last) of rank's share of a batch of `size`, as equal as possible."""
    base, extra = divmod(size, world_size)
    first = rank * base + min(rank, extra)
    return first, first + base + (1 if rank < extra else 0)
