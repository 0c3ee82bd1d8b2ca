"""Files written from predictions: palette mask PNGs, coloured overlays and the images the model saw.

A mask is a palette ("P" mode) PNG of class indices at exactly the input's width and height, so
`np.array(Image.open(path))` returns the indices and an image viewer shows the colours. The
colours are those of the PASCAL VOC development kit (class 0 black, 1 dark red, 2 dark green, ...).
"""

from pathlib import Path

import numpy as np
from PIL import Image

from neuralab.training.checkpoint import atomic_write

OVERLAY_OPACITY = 0.5  # weight of the class colour over the input image, on non-background pixels
PALETTE_SIZE = 256


def voc_palette(count: int = PALETTE_SIZE) -> np.ndarray:
    """Return the PASCAL VOC colour map: (count, 3) uint8, colours spread by the bits of the class index."""
    colours = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours[index] = (red, green, blue)
    return colours


PALETTE = voc_palette()


def mask_image(mask: np.ndarray) -> Image.Image:
    """Return class indices (H, W) uint8 as a palette image of the same size."""
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # (H, W) uint8 -> mode "L"
    image = image.convert("P")  # "L" -> "P" keeps the values as palette indices
    image.putpalette(PALETTE.ravel().tolist())
    return image


def overlay_image(display: np.ndarray, mask: np.ndarray) -> Image.Image:
    """Return the RGB input (H, W, 3) with each non-background pixel tinted by its class colour."""
    colours = PALETTE[mask].astype(np.float32)  # (H, W) -> (H, W, 3)
    blended = display.astype(np.float32)
    foreground = mask != 0
    blended[foreground] = (1 - OVERLAY_OPACITY) * blended[foreground] + OVERLAY_OPACITY * colours[foreground]
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def save_png(image: Image.Image, path: Path) -> Path:
    """Write `image` as a PNG at `path` atomically and return the path."""
    atomic_write(path, lambda temporary: image.save(temporary, format="PNG"))
    return path


def input_image(pixels: np.ndarray) -> Image.Image:
    """Return the uint8 (C, H, W) model input as a grayscale or RGB image."""
    return Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1))  # (C, H, W) -> (H, W, C)


class OutputNames:
    """File stems for outputs, one per input: the input's own stem, with -2, -3, ... added on a clash."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def stem(self, source: str) -> str:
        base = Path(source).stem if not source.startswith("<") else "input-" + source.strip("<>").split()[-1]
        stem, count = base, 1
        while stem in self.used:
            count += 1
            stem = f"{base}-{count}"
        self.used.add(stem)
        return stem
