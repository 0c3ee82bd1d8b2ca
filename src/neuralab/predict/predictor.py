"""The Python prediction API: `load(RUN_DIR)` returns a Predictor for paths, PIL images and tensors.

    predictor = neuralab.load("runs/mnist-cnn-20260101-120000")
    result = predictor.predict("photo.jpg")          # one input -> one result
    results = predictor.predict(["a.png", "b.jpg"])  # a list, a folder or an (N, C, H, W) tensor -> a list
    result.label, result.probability, result.top_k, result.steps

Every input goes through the same preprocessing as `neuralab predict` (see `neuralab.predict.preprocess`).
"""

import glob
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from neuralab.data.idx import DataFileError
from neuralab.nn.losses import _probabilities as probabilities
from neuralab.predict.digits import NO_OBJECT
from neuralab.predict.inputs import (
    Batch,
    Failure,
    Prepared,
    collate,
    expand_paths,
    iter_file_batches,
    prepare_input,
    worker_count,
)
from neuralab.predict.preprocess import Preprocessing, normalize
from neuralab.training.devices import memory_format, resolve_device
from neuralab.training.inference import load_model
from neuralab.training.runs import RunDir

ImageInput = str | Path | Image.Image | Tensor
DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 64
BACKGROUND_CLASS = 0  # segmentation masks use class 0 for the background


class PredictionWarning(UserWarning):
    """A prediction that is probably useless, such as a mask that is background everywhere."""


@dataclass(frozen=True)
class Classification:
    """The top classes of one input, most probable first, with the preprocessing applied to it."""

    source: str
    top_k: tuple[tuple[str, float], ...]  # (class name, probability)
    steps: tuple[str, ...]
    size: tuple[int, int]  # (height, width) of the upright input image
    pixels: np.ndarray = field(repr=False)  # uint8 (C, H, W): the image the model saw, before normalization

    @property
    def label(self) -> str:
        return self.top_k[0][0]

    @property
    def probability(self) -> float:
        return self.top_k[0][1]

    @property
    def no_object(self) -> bool:
        """Whether preprocessing found no object in the image (a blank page), so the classes are a guess."""
        return NO_OBJECT in self.steps


@dataclass(frozen=True)
class Segmentation:
    """The class-index mask of one input, exactly its height and width, and the pixels per class."""

    source: str
    mask: np.ndarray = field(repr=False)  # uint8 (H, W) class indices
    class_pixels: dict[str, int]
    steps: tuple[str, ...]
    size: tuple[int, int]
    pixels: np.ndarray = field(repr=False)
    display: np.ndarray | None = field(default=None, repr=False)  # RGB (H, W, 3) of the input, for overlays

    @property
    def all_background(self) -> bool:
        return int(np.count_nonzero(self.mask != BACKGROUND_CLASS)) == 0


Result = Classification | Segmentation


def resolve_run_dir(path: str | Path) -> Path:
    """Return the run directory that `path` names: the folder itself, or the folder of a file inside a run."""
    path = Path(path).expanduser()
    if path.is_file():
        if (path.parent / "config.yaml").is_file():
            return path.parent
        raise ValueError(f"{path}: not a neuralab run directory but a file; pass the folder that `neuralab train` "
                         "created (it contains config.yaml and model.safetensors)")
    return path


class Predictor:
    """A trained model with the preprocessing of its run, whose `predict` takes paths, PIL images or tensors."""

    def __init__(self, model: nn.Module, metadata: dict[str, Any], run_dir: Path | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device, memory_format=memory_format(model)).eval()
        self.metadata = metadata
        self.run_dir = run_dir
        self.classes: tuple[str, ...] = tuple(metadata["classes"])
        self.task: str = metadata["task"]
        self.head: str = metadata["head"]
        self.preprocessing = Preprocessing.from_metadata(metadata)
        if self.task not in ("classification", "segmentation"):
            raise ValueError(f"{run_dir}: predicting is supported for classification and segmentation runs, "
                             f"not task {self.task!r}")

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> "Predictor":
        """Return the predictor of a finished run; `device` is auto, cpu, cuda or mps."""
        path = resolve_run_dir(run_dir)
        model, metadata, _ = load_model(RunDir.open(path).path)
        return cls(model, metadata, path, resolve_device(device))

    def predict(self, images: ImageInput | Sequence[ImageInput], *, top_k: int = DEFAULT_TOP_K,
                batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int | None = None) -> Result | list[Result]:
        """Return one result for one input, or a list for a list, a folder, a glob or an (N, C, H, W) tensor.

        A 3-D tensor is one image (C, H, W), as in torchvision, so pass a batch of digits (N, H, W)
        as `images.unsqueeze(1)`. Raises DataFileError naming the first input that cannot be read.
        A mask that is background everywhere, or an image without an object to classify, gives a
        PredictionWarning. `num_workers` processes decode files (None: one per CPU for 64 files or
        more, otherwise none).
        """
        results = []
        for result in self.iter_predict(images, top_k=top_k, batch_size=batch_size, num_workers=num_workers):
            if isinstance(result, Failure):
                raise DataFileError(result.message)
            warning = self.warning(result)
            if warning is not None:
                warnings.warn(warning, PredictionWarning, stacklevel=2)
            results.append(result)
        return results[0] if _is_single(images) else results

    def warning(self, result: Result) -> str | None:
        """Return the warning that `result` needs, naming its source, or None.

        A mask without any object gets one, and so does a class guessed on an image without an object.
        """
        if isinstance(result, Segmentation) and result.all_background:
            return (f"{result.source}: every pixel is predicted as {self.classes[BACKGROUND_CLASS]!r}; "
                    "the model found no object")
        if isinstance(result, Classification) and result.no_object:
            return f"{result.source}: {NO_OBJECT} in the image, so the predicted class is a guess"
        return None

    def iter_predict(self, images: ImageInput | Sequence[ImageInput], *, top_k: int = DEFAULT_TOP_K,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     num_workers: int | None = None) -> Iterator[Result | Failure]:
        """Yield a result, or a Failure for an input that cannot be read, per input in order."""
        if top_k < 1:
            raise ValueError(f"top_k (--top-k) must be at least 1, got {top_k}")
        if batch_size < 1:
            raise ValueError(f"batch_size (--batch-size) must be at least 1, got {batch_size}")
        if self.task == "segmentation":
            batch_size = 1  # images keep their own sizes, so they cannot be stacked
        items = _as_list(images)
        if all(isinstance(item, (str, Path)) for item in items):
            paths = expand_paths(items)
            files = [path for path in paths if isinstance(path, Path)]
            workers = worker_count(len(files), batch_size, num_workers)
            batches = _merge_failures(paths, iter_file_batches(files, self.preprocessing, batch_size, workers,
                                                               keep_display=self.task == "segmentation"))
        else:
            workers = 0
            batches = self._batches(items, batch_size)
        # While workers decode on every core, extra model threads (idle ones spin) take CPU time from
        # them: a folder of photos went about 1.3x faster with one thread on 2 cores.
        threads = 1 if workers > 0 else torch.get_num_threads()
        for batch in batches:
            with _torch_threads(threads):
                results = self._predict_batch(batch, top_k)
            yield from results

    def _batches(self, items: list[ImageInput], batch_size: int) -> Iterator[Batch]:
        """Yield PIL images and tensors (and any paths among them) prepared in this process, in batches."""
        keep_display = self.task == "segmentation"
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            sources = [str(item) if isinstance(item, (str, Path)) else f"<input {start + offset}>"
                       for offset, item in enumerate(chunk)]
            yield collate([prepare_input(item, source, self.preprocessing, keep_display)
                           for item, source in zip(chunk, sources)])

    def forward(self, pixels: Tensor) -> Tensor:
        """Return the model's outputs for uint8 pixels (N, C, H, W): normalized as in training, no gradients."""
        inputs = normalize(pixels, self.preprocessing).to(self.device)
        with torch.inference_mode():
            return self.model(inputs).float().cpu()

    def _predict_batch(self, batch: Batch, top_k: int) -> list[Result | Failure]:
        """Return a result or the Failure of each item of `batch`, in order."""
        outputs = self.forward(batch.pixels) if batch.prepared else None
        ranked = self._rank(outputs, top_k) if outputs is not None and self.task == "classification" else None
        results: list[Result | Failure] = []
        index = 0
        for item in batch.items:
            if isinstance(item, Failure):
                results.append(item)
                continue
            pixels = batch.pixels[index].numpy()
            if ranked is None:
                results.append(self._segmentation(item, outputs[index], pixels))
            else:
                results.append(Classification(item.source, ranked[index], item.steps, item.size, pixels))
            index += 1
        return results

    def _rank(self, outputs: Tensor, top_k: int) -> list[tuple[tuple[str, float], ...]]:
        """Return the `top_k` (class, probability) pairs of each row of classifier outputs (N, K)."""
        values, indices = probabilities(outputs, self.head).topk(min(top_k, len(self.classes)), dim=1)
        return [tuple((self.classes[index], value) for value, index in zip(row_values, row_indices))
                for row_values, row_indices in zip(values.tolist(), indices.tolist())]

    def _segmentation(self, item: Prepared, outputs: Tensor, pixels: np.ndarray) -> Segmentation:
        mask = _class_indices(outputs, self.head).numpy().astype(np.uint8)
        counts = np.bincount(mask.ravel(), minlength=len(self.classes))
        class_pixels = {name: int(count) for name, count in zip(self.classes, counts)}
        return Segmentation(item.source, mask, class_pixels, item.steps, item.size, pixels, item.display)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run the block with at most `count` torch threads, then restore the previous number."""
    previous = torch.get_num_threads()
    if count >= previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _class_indices(outputs: Tensor, head: str) -> Tensor:
    """Return the class-index map (H, W) of one segmentation output (K, H, W)."""
    if outputs.shape[0] > 1:
        return outputs.argmax(dim=0)
    # A single output channel scores the foreground: logits against 0, probabilities against 0.5.
    return (outputs[0] > (0.0 if head == "logits" else 0.5)).long()


def _is_single(images: Any) -> bool:
    if isinstance(images, Tensor):
        return images.dim() <= 3
    if isinstance(images, (str, Path)):
        return not Path(images).expanduser().is_dir() and not glob.has_magic(str(images))
    return isinstance(images, Image.Image)


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, Tensor):
        return list(images.unbind(0)) if images.dim() == 4 else [images]  # (N, C, H, W) -> N x (C, H, W)
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if not isinstance(images, Iterable):
        raise TypeError(f"predict takes a path, a PIL image, a tensor or a list of them, got {type(images).__name__}")
    return list(images)


def _merge_failures(paths: list[Path | Failure], batches: Iterator[Batch]) -> Iterator[Batch]:
    """Yield `batches` with the Failures of path expansion put back at their places in the input order."""
    position = 0
    for batch in batches:
        merged: list[Prepared | Failure] = []
        for item in batch.items:
            while isinstance(paths[position], Failure):
                merged.append(paths[position])
                position += 1
            merged.append(item)
            position += 1
        yield Batch(merged, batch.pixels)
    if position < len(paths):
        yield Batch(list(paths[position:]), None)  # only Failures are left


def load(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """Return a Predictor for the finished run in `run_dir` (the folder `neuralab train` wrote)."""
    return Predictor.load(run_dir, device)
