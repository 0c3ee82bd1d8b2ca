"""The preprocessing that makes a user's image look like the images a run was trained on.

The run's data set selects the steps. MNIST and Fashion-MNIST models get their data set's own
normalization of the object (see `neuralab.predict.digits`). mnist-scenes U-Nets get
white-on-black ink at the image's own size. Image-folder models get the training folder's
channels and size. Every image then gets the run's training normalization, (x / 255 - mean) / std.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from neuralab.data import folders, scenes
from neuralab.data.batches import to_float_images
from neuralab.data.sources import FASHION_MNIST, MNIST
from neuralab.predict import digits
from neuralab.predict.images import to_array

# JPEG photos are decoded at no less than this many pixels per side (a power-of-two reduction), and
# objects are never searched at a higher resolution: a 12-megapixel photo would take 50x longer.
WORKING_SIZE = 512
# Objects are searched first on the photo scaled to this many pixels per side, which is fast.
COARSE_SIZE = 128
# An object found spanning fewer than OVERSAMPLING times its side in the 28x28 canvas is searched
# again at a higher resolution, so that scaling it down still averages several pixels per output pixel.
OVERSAMPLING = 2

OBJECT_STYLES = {MNIST.name: digits.MNIST_STYLE, FASHION_MNIST.name: digits.FASHION_STYLE}


@dataclass(frozen=True)
class Preprocessing:
    """The input format of a run's model: its data set's preprocessing, channels, size and normalization."""

    dataset: str  # the run's data.dataset: mnist, fashion-mnist, mnist-scenes or folder
    channels: int
    size: tuple[int, int] | None  # (height, width) the model takes; None: any size, kept as it is
    mean: float
    std: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "Preprocessing":
        """Return the preprocessing stored in a run's weights metadata."""
        stored = metadata["preprocessing"]
        in_shape = metadata["model"]["in_shape"]
        size = None if metadata["task"] == "segmentation" else (int(in_shape[1]), int(in_shape[2]))
        return cls(stored["dataset"], int(in_shape[0]), size, float(stored["mean"]), float(stored["std"]))

    @property
    def draft_size(self) -> int | None:
        """The smallest side a JPEG may be decoded at, or None where the image's own size must be kept."""
        if self.size is None:
            return None
        return WORKING_SIZE if self.dataset in OBJECT_STYLES else max(self.size)

    def describe(self) -> list[str]:
        """Return the steps applied to every image, in order, as short phrases."""
        steps = ["EXIF orientation applied", "transparency composited on white"]
        ink = ["grayscale", "a light background is inverted", "uneven lighting flattened"]
        if self.dataset == MNIST.name:
            steps += [*ink, "ink levels stretched to white", "cropped to the digit",
                      "fit into 20x20 keeping the aspect ratio", "placed in 28x28 with the centre of mass at (14, 14)"]
        elif self.dataset == FASHION_MNIST.name:
            steps += [*ink, "cropped to the object", "longest side fit to 28 keeping the aspect ratio",
                      "centred in 28x28"]
        elif self.dataset == scenes.NAME:
            steps += [*ink, "ink levels stretched to white", "size kept"]
        else:
            steps += [f"converted to {'grayscale' if self.channels == 1 else 'RGB'}",
                      "size kept" if self.size is None else f"resized to {self.size[0]}x{self.size[1]}"]
        return steps + [f"normalized: (x / 255 - {self.mean}) / {self.std}"]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "channels": self.channels, "size": list(self.size) if self.size else None,
                "mean": self.mean, "std": self.std, "steps": self.describe()}


def prepare(image: Image.Image, preprocessing: Preprocessing,
            size: tuple[int, int] | None = None) -> tuple[np.ndarray, list[str]]:
    """Return the uint8 (C, H, W) model input of an upright image, before normalization, and the steps applied.

    `size` is the (height, width) of the file when `image` was decoded smaller (a JPEG draft);
    reported coordinates refer to it.
    """
    if preprocessing.dataset in OBJECT_STYLES:
        return _prepare_object(image, OBJECT_STYLES[preprocessing.dataset], size or (image.height, image.width))
    if preprocessing.dataset == scenes.NAME:
        # NOTE: the image keeps its size, so digits much larger than the 28-pixel digits of the
        # mnist-scenes training scenes are segmented poorly. Scale such photos down first.
        gray, steps = to_array(image, 1)
        ink, ink_steps = digits.extract_ink(gray, stretch=True)
        return np.rint(ink).astype(np.uint8)[None], steps + ink_steps  # (H, W) -> (1, H, W)
    return _prepare_folder_image(image, preprocessing)


def _prepare_object(image: Image.Image, style: digits.ObjectStyle,
                    size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Return a photo's object scaled and placed as the data set did, searched coarse first, finer if small."""
    gray, steps = to_array(image, 1)
    full = Image.fromarray(gray)
    working = _shrink(full, COARSE_SIZE)
    ink, ink_steps = digits.extract_ink(np.asarray(working), style.stretch)
    box = digits.object_box(ink)
    needed = OVERSAMPLING * style.box
    if box is not None and _longest_side(box) < needed and max(working.size) < max(full.size):
        finer = _shrink(full, min(WORKING_SIZE, math.ceil(max(working.size) * needed / _longest_side(box))))
        if finer.size != working.size:
            working = finer
            ink, ink_steps = digits.extract_ink(np.asarray(working), style.stretch)
            box = digits.object_box(ink)
    steps += ink_steps
    if box is None:
        steps += [] if digits.NO_OBJECT in steps else [digits.NO_OBJECT]
        return np.zeros((1, digits.CANVAS, digits.CANVAS), dtype=np.uint8), steps
    # The box in the input image's pixels, for the report; each side was rounded on its own when shrunk.
    row_scale, column_scale = size[0] / working.height, size[1] / working.width
    top, bottom = round(box[0] * row_scale), round(box[1] * row_scale)
    left, right = round(box[2] * column_scale), round(box[3] * column_scale)
    steps += [f"cropped to {bottom - top}x{right - left} at row {top}, column {left}", style.placement]
    return style.render(ink, box)[None], steps  # (28, 28) -> (1, 28, 28)


def _longest_side(box: tuple[int, int, int, int]) -> int:
    top, bottom, left, right = box
    return max(bottom - top, right - left)


def _shrink(image: Image.Image, limit: int) -> Image.Image:
    """Return a grayscale `image` scaled down (area average) so that no side exceeds `limit`, or `image` itself."""
    if max(image.size) <= limit:
        return image
    scale = limit / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def _prepare_folder_image(image: Image.Image, preprocessing: Preprocessing) -> tuple[np.ndarray, list[str]]:
    pixels, steps = to_array(image, preprocessing.channels)
    tensor = torch.from_numpy(np.array(pixels))  # a copy: arrays read from PIL images are read-only
    tensor = tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)  # (H, W[, C]) -> (C, H, W)
    if preprocessing.size is not None and tuple(tensor.shape[-2:]) != preprocessing.size:
        steps.append(f"resized from {tensor.shape[-2]}x{tensor.shape[-1]} to "
                     f"{preprocessing.size[0]}x{preprocessing.size[1]}")
        tensor, _ = folders.resize(tensor, None, preprocessing.size)
    return tensor.numpy(), steps


def normalize(pixels: Tensor, preprocessing: Preprocessing) -> Tensor:
    """Return uint8 pixels (N, C, H, W) as the float32 model input, normalized as in training."""
    return to_float_images(pixels, preprocessing.mean, preprocessing.std)
