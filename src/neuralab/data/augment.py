"""Per-sample random augmentation of a whole in-memory batch.

torchvision's v2 transforms draw one set of random parameters per call, so a batch would
get the same shift for every image; these classes draw one set per image instead. Drawing
(`draw`) is separate from applying (`apply`) so that every process of a distributed run
draws the parameters of the whole global batch, consuming the same random numbers as one
process would, and applies only its own share.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomShift:
    """Shift each image by a random whole number of pixels, up to `max_shift` in x and y."""

    def __init__(self, max_shift: int, fill: float) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be non-negative, got {max_shift}")
        self.max_shift = max_shift
        self.fill = fill  # the normalized value of a background pixel

    def draw(self, count: int, generator: torch.Generator) -> Tensor:
        """Return (count, 2) offsets into the padded image, rows then columns."""
        return torch.randint(0, 2 * self.max_shift + 1, (2, count), generator=generator).T

    def apply(self, images: Tensor, offsets: Tensor) -> Tensor:
        if self.max_shift == 0:
            return images
        batch, channels, height, width = images.shape
        pad = self.max_shift
        padded_width = width + 2 * pad
        padded = F.pad(images, (pad, pad, pad, pad), value=self.fill)  # (B, C, H, W) -> (B, C, H+2p, W+2p)
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

    def __init__(self, degrees: float, scale: float, max_shift: float, fill: float) -> None:
        self.radians = math.radians(degrees)
        self.scale = scale  # relative range: 0.1 draws zoom factors in [0.9, 1.1]
        self.max_shift = max_shift  # pixels
        self.fill = fill

    def draw(self, count: int, generator: torch.Generator) -> Tensor:
        """Return (count, 4) uniform draws in [-1, 1): angle, zoom, x shift, y shift."""
        return (torch.rand((4, count), generator=generator) * 2 - 1).T

    def apply(self, images: Tensor, draws: Tensor) -> Tensor:
        _, _, height, width = images.shape
        angle = draws[:, 0] * self.radians
        zoom = 1 + draws[:, 1] * self.scale
        cos, sin = angle.cos() / zoom, angle.sin() / zoom
        theta = torch.stack([
            torch.stack([cos, -sin, draws[:, 2] * 2 * self.max_shift / width], dim=1),
            torch.stack([sin, cos, draws[:, 3] * 2 * self.max_shift / height], dim=1),
        ], dim=1)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        shifted = F.grid_sample(images - self.fill, grid, align_corners=False, padding_mode="zeros")
        return shifted + self.fill

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(images, self.draw(len(images), generator))


def build_augment(name: str, fill: float, max_shift: int = 2, degrees: float = 10.0, scale: float = 0.1):
    """Return the augmentation called `name` ("none", "shift" or "affine"), or None for "none"."""
    if name == "none":
        return None
    if name == "shift":
        return RandomShift(max_shift, fill)
    if name == "affine":
        return RandomAffine(degrees, scale, max_shift, fill)
    raise ValueError(f"unknown augmentation {name!r}; valid names: none, shift, affine")
