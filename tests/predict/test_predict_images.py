"""Tests for decoding user images: every mode and format, EXIF orientation, transparency, 16-bit depth."""

import numpy as np
import pytest
import torch
from PIL import Image

from neuralab.data.idx import DataFileError
from neuralab.predict.images import read_image, tensor_to_image, to_array

ORIENTATION_TAG = 0x0112
FORMATS = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF", "tif": "TIFF", "webp": "WEBP"}


def _gradient(height: int = 12, width: int = 20) -> np.ndarray:
    """Return a uint8 (H, W) image whose every pixel differs from its neighbours."""
    return (np.arange(height * width, dtype=np.int64).reshape(height, width) * 255 // (height * width)).astype(
        np.uint8)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_every_format_and_mode_decodes(tmp_path, suffix, mode):
    if (suffix, mode) in {("jpg", "RGBA"), ("jpg", "P"), ("bmp", "RGBA")}:
        pytest.skip(f"{FORMATS[suffix]} cannot store mode {mode}")
    gray = _gradient()
    image = Image.fromarray(gray).convert(mode)
    path = tmp_path / f"image.{suffix}"
    image.save(path, format=FORMATS[suffix], **({"lossless": True} if suffix == "webp" else {}))

    decoded, _, size = read_image(path)
    pixels, _ = to_array(decoded, 1)

    assert size == gray.shape
    assert pixels.shape == gray.shape
    assert pixels.dtype == np.uint8
    lossy = suffix in ("jpg", "gif") or mode == "P"  # JPEG compresses with loss; GIF and palettes quantize
    tolerance = 8 if lossy else 1
    assert np.abs(pixels.astype(int) - gray).max() <= tolerance


@pytest.mark.parametrize("orientation, stored", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90),
                                                 (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_restores_upright_pixels(tmp_path, orientation, stored):
    upright = _gradient(10, 16)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    path = tmp_path / "rotated.png"
    Image.fromarray(upright).transpose(stored).save(path, exif=exif)

    decoded, steps, size = read_image(path)

    np.testing.assert_array_equal(np.asarray(decoded), upright)
    assert size == (10, 16)
    assert steps == [f"EXIF orientation {orientation} applied"]


def test_animated_gif_uses_its_first_frame(tmp_path):
    first, second = _gradient(), 255 - _gradient()
    path = tmp_path / "animated.gif"
    Image.fromarray(first).save(path, save_all=True, append_images=[Image.fromarray(second)])

    decoded, steps, _ = read_image(path)

    np.testing.assert_array_equal(np.asarray(decoded.convert("L")), first)
    assert steps == ["first of 2 frames"]


def test_rgba_composites_on_white():
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)  # black and fully transparent
    rgba[1, 2] = (0, 0, 0, 255)  # one opaque black pixel
    rgba[2, 3] = (0, 0, 0, 128)  # one half-transparent black pixel

    pixels, steps = to_array(Image.fromarray(rgba), 1)

    assert pixels[0, 0] == 255
    assert pixels[1, 2] == 0
    assert pixels[2, 3] == pytest.approx(127, abs=1)
    assert "transparency composited on white" in steps


def test_palette_with_transparency_composites_on_white():
    image = Image.new("P", (3, 2), 0)
    image.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    image.info["transparency"] = 0

    pixels, _ = to_array(image, 1)

    assert (pixels == 255).all()


def test_sixteen_bit_image_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 8-bit 0, 1, 128, 255 scaled by 257
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)  # uint16 -> mode "I;16"

    decoded, _, _ = read_image(path)
    pixels, steps = to_array(decoded, 1)

    assert decoded.mode.startswith("I")
    np.testing.assert_array_equal(pixels, [[0, 1, 128, 255]])
    assert "16-bit scaled to 8-bit" in steps


def test_rgb_request_repeats_gray_levels():
    pixels, _ = to_array(Image.fromarray(_gradient()), 3)

    assert pixels.shape == (12, 20, 3)
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def test_jpeg_draft_keeps_file_size(tmp_path):
    path = tmp_path / "large.jpg"
    Image.fromarray(np.full((1200, 1000), 200, dtype=np.uint8)).save(path)

    decoded, _, size = read_image(path, draft_size=256)

    assert size == (1200, 1000)
    assert decoded.size == (500, 600)  # 1/2 is the largest reduction that keeps both sides at least 256


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")

    with pytest.raises(DataFileError, match=r"broken\.png: cannot read the image .*replace or remove the file"):
        read_image(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataFileError, match=r"absent\.jpg: image file not found"):
        read_image(tmp_path / "absent.jpg")


@pytest.mark.parametrize("tensor, mode", [(torch.zeros(5, 7, dtype=torch.uint8), "L"),
                                          (torch.zeros(1, 5, 7), "L"), (torch.zeros(3, 5, 7), "RGB"),
                                          (torch.zeros(4, 5, 7, dtype=torch.uint8), "RGBA")])
def test_tensor_becomes_image(tensor, mode):
    image = tensor_to_image(tensor)

    assert image.mode == mode
    assert image.size == (7, 5)


def test_float_tensor_is_scaled_from_unit_range():
    image = tensor_to_image(torch.tensor([[0.0, 0.5, 1.0, 2.0]]))

    np.testing.assert_array_equal(np.asarray(image), [[0, 128, 255, 255]])


def test_tensor_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\).*got shape \(2, 5, 7\)"):
        tensor_to_image(torch.zeros(2, 5, 7))
