"""Inputs to predict on: expand paths, folders and globs, then decode and preprocess them in batches.

Files are decoded and preprocessed in worker processes (a torch DataLoader), because decoding and
preprocessing take several times longer than a small model's forward pass. Each worker prepares a
whole batch, so the main process receives one stacked tensor per batch. A file that cannot be read
becomes a `Failure` in its place, and the other files are still prepared.
"""

import glob
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuralab.data.folders import IMAGE_SUFFIXES, image_files
from neuralab.data.idx import DataFileError
from neuralab.predict.images import read_image, tensor_to_image, to_array, upright
from neuralab.predict.preprocess import Preprocessing, prepare

# Starting the worker processes took about 0.1 s (two workers, measured on 2 CPU cores), as long as
# preparing a few dozen photos, so fewer files than this are prepared in the calling process.
MIN_FILES_FOR_WORKERS = 64
# Errors that mean "this one file is unusable"; other errors are bugs and propagate.
FILE_ERRORS = (DataFileError, OSError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted: its name, and a one-line message naming it and the reason."""

    source: str
    message: str


@dataclass(frozen=True)
class Prepared:
    """One preprocessed input: the uint8 (C, H, W) model input before normalization, and the steps applied."""

    source: str
    pixels: np.ndarray | None  # None once moved into the batch tensor
    steps: tuple[str, ...]
    size: tuple[int, int]  # (height, width) of the upright input image
    display: np.ndarray | None = field(default=None, repr=False)  # RGB (H, W, 3) of the input, for overlays


@dataclass(frozen=True)
class Batch:
    """Prepared inputs and failures in input order, with the pixels of the prepared ones stacked (N, C, H, W)."""

    items: list[Prepared | Failure]
    pixels: Tensor | None

    @property
    def prepared(self) -> list[Prepared]:
        return [item for item in self.items if isinstance(item, Prepared)]


def expand_paths(paths: Sequence[str | Path]) -> list[Path | Failure]:
    """Return the image files that `paths` name, in order: files as given, folders' images, glob matches.

    A folder contributes the image files directly inside it (IMAGE_SUFFIXES, sorted by name). Its
    sub-folders are not searched, but a recursive glob such as 'photos/**/*.jpg' searches them.
    A path that matches nothing becomes a Failure in its place.
    """
    expanded: list[Path | Failure] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found = image_files(path)
            expanded += found or [Failure(str(path), f"{path}: no image files in the folder (suffixes: "
                                                     f"{', '.join(IMAGE_SUFFIXES)})")]
        elif path.exists() or not glob.has_magic(str(text)):
            expanded.append(path)  # a missing file is reported by name when it is read
        else:
            matches = sorted(Path(match) for match in glob.glob(str(path), recursive=True))
            matches = [match for match in matches if match.is_file() and match.suffix.lower() in IMAGE_SUFFIXES]
            expanded += matches or [Failure(str(text), f"{text}: no image file matches this pattern")]
    return expanded


def prepare_image(image: Image.Image, source: str, preprocessing: Preprocessing, keep_display: bool,
                  steps: Sequence[str] = (), size: tuple[int, int] | None = None) -> Prepared:
    """Return the prepared form of an upright PIL image; `size` is the file's when the image was decoded smaller."""
    size = size or (image.height, image.width)
    pixels, prepare_steps = prepare(image, preprocessing, size)
    display = to_array(image, 3)[0] if keep_display else None
    return Prepared(source, pixels, (*steps, *prepare_steps), size, display)


def prepare_input(item: str | Path | Image.Image | Tensor, source: str, preprocessing: Preprocessing,
                  keep_display: bool) -> Prepared | Failure:
    """Return a file path, PIL image or image tensor prepared for the model, or a Failure for an unreadable file.

    An input of another type, or a tensor of the wrong shape, raises TypeError or ValueError at once.
    """
    if isinstance(item, Image.Image):
        image, steps = upright(item)
        return prepare_image(image, source, preprocessing, keep_display, steps)
    if isinstance(item, Tensor):
        return prepare_image(tensor_to_image(item), source, preprocessing, keep_display)
    if not isinstance(item, (str, Path)):
        raise TypeError(f"cannot predict on a {type(item).__name__}; pass file paths, PIL images or "
                        "image tensors (H, W), (C, H, W) or (N, C, H, W)")
    try:
        image, steps, size = read_image(Path(item), preprocessing.draft_size)
        return prepare_image(image, source, preprocessing, keep_display, steps, size)
    except FILE_ERRORS as error:
        return Failure(source, str(error))


def collate(items: list[Prepared | Failure]) -> Batch:
    """Return `items` as one Batch, stacking the pixels when the prepared inputs share one size."""
    prepared = [item for item in items if isinstance(item, Prepared)]
    shapes = {item.pixels.shape for item in prepared}
    if len(shapes) != 1:
        return Batch(items, None)
    pixels = torch.from_numpy(np.stack([item.pixels for item in prepared]))  # N x (C, H, W) -> (N, C, H, W)
    return Batch([replace(item, pixels=None) if isinstance(item, Prepared) else item for item in items], pixels)


class _FileDataset(Dataset):
    """Files to prepare, read in worker processes. Module-level so that spawned workers can unpickle it."""

    def __init__(self, paths: list[Path], preprocessing: Preprocessing, keep_display: bool) -> None:
        self.paths = paths
        self.preprocessing = preprocessing
        self.keep_display = keep_display

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Prepared | Failure:
        path = self.paths[index]
        return prepare_input(path, str(path), self.preprocessing, self.keep_display)


def default_workers(count: int) -> int:
    """Return the worker processes worth starting for `count` files: one per usable CPU, none for a few files."""
    if count < MIN_FILES_FOR_WORKERS:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus)


def worker_count(files: int, batch_size: int, requested: int | None) -> int:
    """Return the worker processes to start: `requested` (None: the default), at most one per batch of files."""
    workers = default_workers(files) if requested is None else requested
    return min(workers, math.ceil(files / batch_size))  # each worker prepares whole batches


def iter_file_batches(paths: list[Path], preprocessing: Preprocessing, batch_size: int, workers: int,
                      keep_display: bool) -> Iterator[Batch]:
    """Yield the files prepared in batches of `batch_size`, in order, by `workers` processes (0: this one)."""
    dataset = _FileDataset(paths, preprocessing, keep_display)
    if workers == 0:
        for start in range(0, len(paths), batch_size):
            yield collate([dataset[index] for index in range(start, min(start + batch_size, len(paths)))])
        return
    # Each worker prepares and stacks whole batches, so the calling process only runs the model.
    yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
