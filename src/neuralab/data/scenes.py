"""The mnist-scenes segmentation data set: real MNIST digits pasted onto 64x64 canvases.

Each scene contains one to three 28x28 digits at uniformly random positions; overlapping digits
combine by the maximum intensity. A pixel belongs to a digit where that digit's intensity is at
least FOREGROUND_THRESHOLD, and a later digit wins where two overlap. Label 0 is background and
label d+1 is digit d. Scenes are drawn from seeds with torch.Generator and cached on disk.
"""

import hashlib
import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuralab.data.batches import split_validation
from neuralab.data.sources import DATASETS, MNIST, load_split
from neuralab.training.checkpoint import atomic_write

logger = logging.getLogger(__name__)

NAME = "mnist-scenes"
CANVAS_SIZE = 64
DIGIT_SIZE = 28
MAX_DIGITS = 3
FOREGROUND_THRESHOLD = 128  # uint8 intensity at and above which a pixel belongs to its digit
CLASSES = ("background", *MNIST.classes)
IN_SHAPE = (1, CANVAS_SIZE, CANVAS_SIZE)
TEST_SCENES = 1000
# Pixel statistics scaled to [0, 1], measured with load_scenes over 20,000 training scenes
# (val_size 5000, val_seed 0). Most pixels are background, hence the low mean.
MEAN = 0.0484
STD = 0.1984

# Fixed generator seeds per split. The validation hold-out (val_seed, val_size) picks the MNIST
# images each split draws from; these seeds pick the layouts.
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}
CACHE_DIR_VARIABLE = "NEURALAB_CACHE_DIR"
CACHE_FORMAT = "neuralab-scenes"
CACHE_VERSION = 1  # raise when the generation rules change, so old cache files no longer match
# torch.load raises these for truncated, corrupt or foreign files.
CACHE_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile,
                     KeyError, TypeError, IndexError, AttributeError)
RENDER_CHUNK = 4096  # scenes placed per step, which bounds the temporary index tensors to ~25 MB


@dataclass(frozen=True)
class ScenesDataset:
    """The registry entry of mnist-scenes: its classes, input shape and pixel statistics."""

    name: str
    classes: tuple[str, ...]
    in_shape: tuple[int, int, int]
    mean: float
    std: float


SCENES = ScenesDataset(NAME, CLASSES, IN_SHAPE, MEAN, STD)
DATASETS.register(NAME, f"{len(CLASSES)} classes (background, digits 0-9), {CANVAS_SIZE}x{CANVAS_SIZE} "
                  "segmentation scenes of 1-3 MNIST digits")(lambda: SCENES)


@dataclass(frozen=True)
class SceneLayout:
    """Source digits and positions of each scene. Slots at or past `num_digits` are unused."""

    num_digits: Tensor  # (N,) int64 in 1..MAX_DIGITS
    sources: Tensor  # (N, MAX_DIGITS) int64 indices into the source images
    rows: Tensor  # (N, MAX_DIGITS) int64 top row of each digit
    cols: Tensor  # (N, MAX_DIGITS) int64 left column of each digit

    def __len__(self) -> int:
        return len(self.num_digits)


def draw_layout(count: int, num_sources: int, seed: int) -> SceneLayout:
    """Draw `count` scene layouts from `num_sources` source images with a generator seeded by `seed`."""
    if count < 0:
        raise ValueError(f"the number of scenes must be non-negative, got {count}")
    if num_sources < 1:
        raise ValueError(f"scenes need at least one source image, got {num_sources}")
    generator = torch.Generator().manual_seed(seed)
    last_position = CANVAS_SIZE - DIGIT_SIZE
    num_digits = torch.randint(1, MAX_DIGITS + 1, (count,), generator=generator)
    sources = torch.randint(0, num_sources, (count, MAX_DIGITS), generator=generator)
    rows = torch.randint(0, last_position + 1, (count, MAX_DIGITS), generator=generator)
    cols = torch.randint(0, last_position + 1, (count, MAX_DIGITS), generator=generator)
    return SceneLayout(num_digits, sources, rows, cols)


def render_scenes(images: Tensor, labels: Tensor, layout: SceneLayout) -> tuple[Tensor, Tensor]:
    """Return (scenes uint8 (N, 64, 64), masks uint8 (N, 64, 64)) for `layout` over the source digits."""
    scenes = torch.zeros(len(layout), CANVAS_SIZE, CANVAS_SIZE, dtype=torch.uint8)
    masks = torch.zeros_like(scenes)
    for start in range(0, len(layout), RENDER_CHUNK):
        stop = min(start + RENDER_CHUNK, len(layout))
        part = SceneLayout(*(tensor[start:stop] for tensor in
                             (layout.num_digits, layout.sources, layout.rows, layout.cols)))
        _render_chunk(images, labels, part, scenes[start:stop], masks[start:stop])
    return scenes, masks


def _render_chunk(images: Tensor, labels: Tensor, layout: SceneLayout, scenes: Tensor, masks: Tensor) -> None:
    """Paste the digits of `layout` into the `scenes` and `masks` views, one digit slot at a time.

    Each step reads and writes only the 28x28 box under every digit, through flat canvas indices.
    """
    count = len(layout)
    box = (torch.arange(DIGIT_SIZE)[:, None] * CANVAS_SIZE + torch.arange(DIGIT_SIZE)).view(1, -1)  # (1, 784)
    flat_scenes = scenes.view(count, -1)  # (n, 64, 64) -> (n, 64*64)
    flat_masks = masks.view(count, -1)  # (n, 64, 64) -> (n, 64*64)
    for slot in range(MAX_DIGITS):
        corner = layout.rows[:, slot] * CANVAS_SIZE + layout.cols[:, slot]  # (n,)
        index = corner[:, None] + box  # (n, 1) + (1, 784) -> (n, 784)
        used = (slot < layout.num_digits).to(torch.uint8)[:, None]  # (n, 1); an unused slot pastes zeros
        digits = images[layout.sources[:, slot]].reshape(count, -1) * used  # (n, 28, 28) -> (n, 784)
        label = (labels[layout.sources[:, slot]] + 1).to(torch.uint8)[:, None]  # (n, 1)

        below = flat_scenes.gather(1, index)
        flat_scenes.scatter_(1, index, torch.maximum(below, digits))
        # The later digit wins: its foreground pixels overwrite whatever label lay below.
        labels_below = flat_masks.gather(1, index)
        flat_masks.scatter_(1, index, torch.where(digits >= FOREGROUND_THRESHOLD, label, labels_below))


def generate_scenes(images: Tensor, labels: Tensor, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """Return `count` (scenes, masks) built from the digits `images` (N, 28, 28) uint8 and their `labels`."""
    if tuple(images.shape[1:]) != (DIGIT_SIZE, DIGIT_SIZE) or images.dtype != torch.uint8:
        raise ValueError(f"scene digits must be uint8 (N, {DIGIT_SIZE}, {DIGIT_SIZE}), "
                         f"got {images.dtype} {tuple(images.shape)}")
    layout = draw_layout(count, len(images), seed)
    return render_scenes(images, labels.long(), layout)


def cache_dir() -> Path:
    """Return the cache folder: $NEURALAB_CACHE_DIR, else ~/.cache/neuralab."""
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "neuralab"


def _fingerprint(images: Tensor, labels: Tensor) -> str:
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _checksum(scenes: Tensor, masks: Tensor) -> str:
    digest = hashlib.sha256(scenes.contiguous().numpy().tobytes())
    digest.update(masks.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cache_key(split: str, count: int, seed: int, images: Tensor, labels: Tensor) -> dict:
    return {"version": CACHE_VERSION, "split": split, "count": count, "seed": seed, "canvas": CANVAS_SIZE,
            "max_digits": MAX_DIGITS, "threshold": FOREGROUND_THRESHOLD, "sources": _fingerprint(images, labels)}


def _cache_path(key: dict) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"{NAME}-{key['split']}-{key['count']}-{name}.pt"


def _load_cached(path: Path, key: dict) -> tuple[Tensor, Tensor] | None:
    """Return the cached (scenes, masks) at `path` if the file is intact and matches `key`, else None."""
    if not path.is_file():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except CACHE_LOAD_ERRORS as error:
        logger.warning("%s: unreadable scene cache (%s: %s); generating the scenes again",
                       path, type(error).__name__, error)
        return None
    expected_shape = (key["count"], CANVAS_SIZE, CANVAS_SIZE)
    valid = (isinstance(content, dict) and content.get("format") == CACHE_FORMAT and content.get("key") == key
             and all(isinstance(content.get(name), Tensor) and content[name].dtype == torch.uint8
                     and tuple(content[name].shape) == expected_shape for name in ("scenes", "masks"))
             and content.get("sha256") == _checksum(content["scenes"], content["masks"]))
    if not valid:
        logger.warning("%s: scene cache does not match its key or checksum; generating the scenes again", path)
        return None
    return content["scenes"], content["masks"]


def _save_cached(path: Path, key: dict, scenes: Tensor, masks: Tensor) -> None:
    content = {"format": CACHE_FORMAT, "key": key, "scenes": scenes, "masks": masks,
               "sha256": _checksum(scenes, masks)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda temporary: torch.save(content, temporary))
    except OSError as error:
        # The scenes are already in memory, so an unwritable cache costs only time on the next run.
        logger.warning("%s: cannot write the scene cache (%s); continuing without it", path, error)


def cached_scenes(split: str, count: int, images: Tensor, labels: Tensor, *, seed: int | None = None,
                  use_cache: bool = True) -> tuple[Tensor, Tensor]:
    """Return `count` scenes of `split` from the source digits, through the on-disk cache when `use_cache`."""
    seed = SPLIT_SEEDS[split] if seed is None else seed
    if not use_cache:
        return generate_scenes(images, labels, count, seed)
    key = _cache_key(split, count, seed, images, labels)
    path = _cache_path(key)
    cached = _load_cached(path, key)
    if cached is not None:
        return cached
    scenes, masks = generate_scenes(images, labels, count, seed)
    _save_cached(path, key, scenes, masks)
    return scenes, masks


def load_scenes(counts: dict[str, int], *, val_size: int, val_seed: int, data_dir: Path | None = None,
                use_cache: bool = True) -> dict[str, tuple[Tensor, Tensor]]:
    """Return {split: (scenes, masks)} for the requested scene count of each split "train", "val" or "test".

    Training scenes draw only from the MNIST training images outside the validation hold-out
    (`val_size` images chosen with `val_seed`), validation scenes only from the held-out images,
    and test scenes only from the MNIST test split.
    """
    unknown = sorted(set(counts) - set(SPLIT_SEEDS))
    if unknown:
        raise ValueError(f"unknown scene split {unknown[0]!r}; valid splits: {', '.join(SPLIT_SEEDS)}")
    if counts.get("val", 0) > 0 and val_size == 0:
        raise ValueError(f"data.val_scenes is {counts['val']} but data.val_size is 0, so no MNIST images are "
                         "held out to draw validation scenes from; set --val-size above 0 or --val-scenes 0")
    sources = {}
    if "train" in counts or "val" in counts:
        images, labels = load_split(MNIST, "train", data_dir)
        train_index, val_index = split_validation(len(labels), val_size, val_seed)
        sources["train"] = (images[train_index], labels[train_index])
        sources["val"] = (images[val_index], labels[val_index])
    if "test" in counts:
        sources["test"] = load_split(MNIST, "test", data_dir)
    return {split: cached_scenes(split, count, *sources[split], use_cache=use_cache) for split, count in counts.items()}
