"""Per-sample random augmentation of a whole in-memory batch.

torchvision's v2 transforms draw one set of random parameters per call, so a batch would
get the same shift for every image; these classes draw one set per image instead. Drawing
(`draw`) is separate from applying (`apply`) so that every process of a distributed run
draws the parameters of the whole global batch, consuming the same random numbers as one
process would, and applies only its own share.

Segmentation masks move with their images: `apply_masks` uses the same parameters, keeps
every class value exactly (whole-pixel gathers, or nearest-neighbour sampling), and gives
pixels brought in from outside the image the label `mask_fill`.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BACKGROUND_LABEL = 0


def mask_fill_label(ignore_index: int | None) -> int:
    """Return the label for mask pixels that a shift, rotation or padding brings in from outside the image.

    Nothing is known about those pixels, so they get the ignore index when the data set has one and
    drop out of the loss and the metrics. Without one they become background (label 0), which is
    what the black image fill shows.
    """
    return BACKGROUND_LABEL if ignore_index is None else ignore_index


class RandomShift:
    """Shift each image by a random whole number of pixels, up to `max_shift` in x and y."""

    def __init__(self, max_shift: int, fill: float, mask_fill: int = BACKGROUND_LABEL) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be non-negative, got {max_shift}")
        self.max_shift = max_shift
        self.fill = fill  # the normalized value of a background pixel
        self.mask_fill = mask_fill

    def draw(self, count: int, generator: torch.Generator) -> Tensor:
        """Return (count, 2) offsets into the padded image, rows then columns."""
        return torch.randint(0, 2 * self.max_shift + 1, (2, count), generator=generator).T

    def apply(self, images: Tensor, offsets: Tensor) -> Tensor:
        return self._shift(images, offsets, self.fill)

    def apply_masks(self, masks: Tensor, offsets: Tensor) -> Tensor:
        """Shift masks (B, H, W) by the offsets of their images, moving class values without blending them."""
        return self._shift(masks.unsqueeze(1), offsets, self.mask_fill).squeeze(1)  # (B, 1, H, W) -> (B, H, W)

    def _shift(self, images: Tensor, offsets: Tensor, fill: float) -> Tensor:
        if self.max_shift == 0:
            return images
        batch, channels, height, width = images.shape
        pad = self.max_shift
        padded_width = width + 2 * pad
        padded = F.pad(images, (pad, pad, pad, pad), value=fill)  # (B, C, H, W) -> (B, C, H+2p, W+2p)
        padded = padded.view(batch * channels, -1)  # (B, C, H+2p, W+2p) -> (B*C, (H+2p)*(W+2p))

        # One gather with flat indices is several times faster than indexing rows and columns.
        window = (torch.arange(height)[:, None] * padded_width + torch.arange(width)).view(1, -1)  # (1, H*W)
        corner = (offsets[:, 0] * padded_width + offsets[:, 1]).repeat_interleave(channels)[:, None]  # (B*C, 1)
        shifted = padded.gather(1, window + corner)  # (B*C, H*W)
        return shifted.view(batch, channels, height, width)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(images, self.draw(len(images), generator))


class RandomAffine:
    """Rotate, scale and shift each image by its own random amounts, through one affine grid."""

    def __init__(self, degrees: float, scale: float, max_shift: float, fill: float,
                 mask_fill: int = BACKGROUND_LABEL) -> None:
        self.radians = math.radians(degrees)
        self.scale = scale  # relative range: 0.1 draws zoom factors in [0.9, 1.1]
        self.max_shift = max_shift  # pixels
        self.fill = fill
        self.mask_fill = mask_fill

    def draw(self, count: int, generator: torch.Generator) -> Tensor:
        """Return (count, 4) uniform draws in [-1, 1): angle, zoom, x shift, y shift."""
        return (torch.rand((4, count), generator=generator) * 2 - 1).T

    def apply(self, images: Tensor, draws: Tensor) -> Tensor:
        grid = self._grid(draws, images.shape[-2:])
        shifted = F.grid_sample(images - self.fill, grid, align_corners=False, padding_mode="zeros")
        return shifted + self.fill

    def apply_masks(self, masks: Tensor, draws: Tensor) -> Tensor:
        """Transform masks (B, H, W) like their images, sampling the nearest pixel so no class value is blended."""
        offset = masks.unsqueeze(1).float() - self.mask_fill  # (B, H, W) -> (B, 1, H, W); labels <= 255 are exact
        grid = self._grid(draws, masks.shape[-2:])
        sampled = F.grid_sample(offset, grid, mode="nearest", align_corners=False, padding_mode="zeros")
        return (sampled + self.mask_fill).squeeze(1).to(masks.dtype)  # (B, 1, H, W) -> (B, H, W)

    def _grid(self, draws: Tensor, size: torch.Size) -> Tensor:
        """Return the sampling grid (B, H, W, 2) of each image's rotation, zoom and shift."""
        height, width = size
        angle = draws[:, 0] * self.radians
        zoom = 1 + draws[:, 1] * self.scale
        cos, sin = angle.cos() / zoom, angle.sin() / zoom
        theta = torch.stack([
            torch.stack([cos, -sin, draws[:, 2] * 2 * self.max_shift / width], dim=1),
            torch.stack([sin, cos, draws[:, 3] * 2 * self.max_shift / height], dim=1),
        ], dim=1)  # (B, 2, 3)
        return F.affine_grid(theta, [len(draws), 1, height, width], align_corners=False)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(images, self.draw(len(images), generator))


def build_augment(name: str, fill: float, max_shift: int = 2, degrees: float = 10.0, scale: float = 0.1,
                  mask_fill: int = BACKGROUND_LABEL):
    """Return the augmentation called `name` ("none", "shift" or "affine"), or None for "none"."""
    if name == "none":
        return None
    if name == "shift":
        return RandomShift(max_shift, fill, mask_fill)
    if name == "affine":
        return RandomAffine(degrees, scale, max_shift, fill, mask_fill)
    raise ValueError(f"unknown augmentation {name!r}; valid names: none, shift, affine")
