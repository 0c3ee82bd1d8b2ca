"""Decode any image a user points at (file, PIL image or tensor) into a uint8 array.

Files of any size and mode load: EXIF orientation is applied, transparency is composited on
white, palette and 1-bit images are expanded, and 16-bit images are scaled to 8 bits. Every
conversion that changes the pixels is reported as a short step for the prediction report.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from neuralab.data.folders import ALPHA_MODES
from neuralab.data.idx import DataFileError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
EIGHT_TO_SIXTEEN = 257  # 65535 / 255: maps 16-bit full scale onto 8-bit full scale
ORIENTATION_TAG = 0x0112  # EXIF Orientation; 1 means the stored pixels are already upright


def read_image(path: Path, draft_size: int | None = None) -> tuple[Image.Image, list[str], tuple[int, int]]:
    """Return the decoded, upright image at `path`, the steps applied and the upright (height, width) of the file.

    With `draft_size`, a JPEG is decoded at the largest power-of-two reduction whose sides stay at
    least `draft_size` pixels (or at full size when smaller), which is several times faster on
    photos. The returned image is then smaller than the file. Raises DataFileError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: image file not found; check the path")
    try:
        with Image.open(path) as image:
            size = (image.height, image.width)
            if draft_size is not None and image.format == "JPEG":
                image.draft(image.mode, (min(image.width, draft_size), min(image.height, draft_size)))
            image.load()
            frames = getattr(image, "n_frames", 1)  # animated GIF, WebP and multi-page TIFF
            if frames > 1:
                image = image.copy()  # a frame of a multi-frame file would read the closed file again
            turned, steps = upright(image)
            steps = ([f"first of {frames} frames"] if frames > 1 else []) + steps
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataFileError(f"{path}: cannot read the image ({error}); replace or remove the file") from None
    if (turned.width > turned.height) != (image.width > image.height):
        size = size[::-1]  # a quarter turn swaps height and width
    return turned, steps, size


def upright(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Return `image` turned upright as its EXIF Orientation tag specifies, and the step taken (if any)."""
    orientation = image.getexif().get(ORIENTATION_TAG, 1)
    if orientation in (None, 1):
        return image, []
    turned = ImageOps.exif_transpose(image)
    return turned, [f"EXIF orientation {orientation} applied"]


def to_array(image: Image.Image, channels: int) -> tuple[np.ndarray, list[str]]:
    """Return `image` as uint8 (H, W) for 1 channel or (H, W, 3) for 3, and the conversions applied."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    steps = []
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        gray, step = _deep_to_uint8(image)
        steps += [step] if step else []
        return (gray if channels == 1 else np.repeat(gray[..., None], 3, axis=-1)), steps
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
        steps.append("transparency composited on white")
    if image.mode not in ("1", "L", "P", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB and HSV convert to "L" only by way of RGB
    target = "L" if channels == 1 else "RGB"
    if target == "L" and image.mode in ("P", "RGB", "RGBA"):
        steps.append("grayscale")
    return np.asarray(image.convert(target)), steps


def _deep_to_uint8(image: Image.Image) -> tuple[np.ndarray, str | None]:
    """Return a 16-bit, 32-bit integer or float grayscale image as uint8 (H, W), scaled rather than clipped."""
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        # Float images contain either [0, 1] intensities or [0, 255] levels, and the maximum separates them.
        scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
        step = "float scaled to 8-bit"
    elif image.mode == "I" and values.size and float(values.max()) <= 255:
        scale, step = 1.0, None  # a 32-bit image holding 8-bit values
    else:
        scale, step = 1.0 / EIGHT_TO_SIXTEEN, "16-bit scaled to 8-bit"
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), step


def tensor_to_image(tensor: Tensor) -> Image.Image:
    """Return a tensor (H, W) or (C, H, W) with C in 1, 3, 4 as a PIL image.

    uint8 tensors contain levels 0..255. Floating-point tensors contain intensities in [0, 1], as
    torchvision's ToTensor produces them, and values outside are clipped.
    """
    if tensor.dim() == 3 and tensor.shape[0] in (1, 3, 4):
        tensor = tensor.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        if tensor.shape[-1] == 1:
            tensor = tensor[..., 0]  # (H, W, 1) -> (H, W)
    elif tensor.dim() != 2:
        raise ValueError(f"an image tensor must be (H, W) or (C, H, W) with 1, 3 or 4 channels, got shape "
                         f"{tuple(tensor.shape)}; pass a batch as (N, C, H, W)")
    tensor = tensor.detach().cpu()
    if tensor.dtype.is_floating_point:
        tensor = (tensor.clamp(0.0, 1.0) * 255.0).round()
    elif tensor.dtype != torch.uint8:
        raise TypeError(f"an image tensor must be uint8 (levels 0..255) or floating point (intensities 0..1), "
                        f"got {tensor.dtype}")
    pixels = tensor.to(torch.uint8).contiguous().numpy()
    return Image.fromarray(pixels)  # (H, W) -> "L", (H, W, 3) -> "RGB", (H, W, 4) -> "RGBA"
