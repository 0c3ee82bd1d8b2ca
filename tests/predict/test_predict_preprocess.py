"""Tests for the data-set-matching preprocessing: inversion, lighting, cropping, MNIST and Fashion-MNIST geometry."""

import numpy as np
import pytest
from PIL import Image
from predict_helpers import photo_digits

from neuralab.data.sources import MNIST, load_split
from neuralab.predict import digits
from neuralab.predict.images import read_image
from neuralab.predict.preprocess import Preprocessing, prepare

MNIST_PREPROCESSING = Preprocessing("mnist", 1, (28, 28), MNIST.mean, MNIST.std)
FASHION_PREPROCESSING = Preprocessing("fashion-mnist", 1, (28, 28), 0.286, 0.353)


def _sheet(height: int, width: int, paper: int = 230) -> np.ndarray:
    return np.full((height, width), paper, dtype=np.uint8)


def _correlation(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(first.astype(float).ravel(), second.astype(float).ravel())[0, 1])


def _box(image: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def test_dark_ink_on_light_paper_is_inverted():
    sheet = _sheet(90, 120)
    sheet[20:70, 40:50] = 30  # a dark vertical stroke

    pixels, steps = prepare(Image.fromarray(sheet), MNIST_PREPROCESSING)

    assert pixels.shape == (1, 28, 28)
    assert "inverted (light background)" in steps
    assert pixels.max() == 255
    assert pixels[0, 0, 0] == 0


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_one_28x28_channel(mode):
    sheet = _sheet(300, 260)
    sheet[60:240, 100:150] = 30
    image = Image.fromarray(sheet)
    if mode == "I;16":
        image = Image.fromarray(sheet.astype(np.uint16) * 257)
    elif mode in ("I", "F"):
        image = Image.fromarray(sheet.astype(np.int32 if mode == "I" else np.float32))
    else:
        image = image.convert(mode)

    pixels, steps = prepare(image, MNIST_PREPROCESSING)

    assert pixels.shape == (1, 28, 28)
    assert pixels.dtype == np.uint8
    assert pixels.max() >= 200  # mode "1" dithers the grey paper, which dims the averaged ink a little
    assert "inverted (light background)" in steps


def test_white_ink_on_black_is_not_inverted():
    sheet = np.zeros((90, 120), dtype=np.uint8)
    sheet[20:70, 40:50] = 220

    pixels, steps = prepare(Image.fromarray(sheet), MNIST_PREPROCESSING)

    assert not any("inverted" in step for step in steps)
    assert pixels.max() == 255


def test_digit_fits_box_centred_by_mass():
    sheet = _sheet(120, 100)
    sheet[20:80, 60:90] = 20  # a 60x30 block far from the centre

    pixels, steps = prepare(Image.fromarray(sheet), MNIST_PREPROCESSING)

    top, bottom, left, right = _box(pixels[0])
    rows, cols = np.indices(pixels[0].shape)
    mass = pixels[0].astype(float)
    assert bottom - top == 20
    assert right - left == 10
    assert (rows * mass).sum() / mass.sum() == pytest.approx(digits.MNIST_CENTRE, abs=0.5)
    assert (cols * mass).sum() / mass.sum() == pytest.approx(digits.MNIST_CENTRE, abs=0.5)
    assert "cropped to 60x30 at row 20, column 60" in steps


def test_garment_fills_28_and_is_centred():
    sheet = _sheet(150, 200)
    sheet[10:40, 20:80] = 60  # a 30x60 object: its longest side becomes 28

    pixels, steps = prepare(Image.fromarray(sheet), FASHION_PREPROCESSING)

    top, bottom, left, right = _box(pixels[0])
    assert (left, right) == (0, 28)
    assert bottom - top == 14
    assert top == (28 - 14) // 2
    assert "longest side fit to 28, centred" in steps


def test_garment_keeps_its_shading():
    sheet = _sheet(100, 100, paper=240)
    sheet[20:80, 20:50] = 40  # dark part of the garment
    sheet[20:80, 50:80] = 140  # light part: after inversion it must stay dimmer than the dark part

    pixels, _ = prepare(Image.fromarray(sheet), FASHION_PREPROCESSING)

    dark_half, light_half = pixels[0, 4:24, 2:13], pixels[0, 4:24, 15:26]
    assert dark_half.mean() > light_half.mean() + 50


def test_uneven_lighting_is_flattened():
    even = _sheet(120, 120)
    even[30:90, 55:65] = 40
    light = np.linspace(0.6, 1.0, 120)[None, :]  # darker on the left, like a lamp on the right
    uneven = np.rint(even * light).astype(np.uint8)

    even_pixels, _ = prepare(Image.fromarray(even), MNIST_PREPROCESSING)
    uneven_pixels, steps = prepare(Image.fromarray(uneven), MNIST_PREPROCESSING)

    assert "uneven lighting flattened" in steps
    uneven_top, uneven_bottom, uneven_left, uneven_right = _box(uneven_pixels[0])
    even_top, even_bottom, even_left, even_right = _box(even_pixels[0])
    assert (uneven_bottom - uneven_top, uneven_right - uneven_left) == (even_bottom - even_top, even_right - even_left)
    assert _correlation(uneven_pixels, even_pixels) > 0.8  # a one-pixel shift in the centring is allowed


def test_far_specks_do_not_stretch_the_box():
    ink = np.zeros((200, 200), dtype=np.float32)
    ink[50:150, 80:120] = 255
    ink[5, 5] = ink[195, 190] = 255  # two bright specks in the corners
    ink[10:30, 170:190] = 20  # a faint smudge

    assert digits.object_box(ink) == (50, 150, 80, 120)


def test_long_thin_photo_reports_box_inside_it():
    sheet = _sheet(3000, 4)
    sheet[1200:1800, 1:3] = 20  # a stroke in a photo 750 times taller than wide: its width shrinks to 1 pixel

    _, steps = prepare(Image.fromarray(sheet), MNIST_PREPROCESSING)

    crop = next(step for step in steps if step.startswith("cropped to"))
    size, place = crop.removeprefix("cropped to ").split(" at row ")
    height, width = map(int, size.split("x"))
    top, left = map(int, place.split(", column "))
    assert top == pytest.approx(1200, abs=30)
    assert height == pytest.approx(600, abs=30)
    assert left + width <= 4


def test_blank_image_gives_black_input():
    pixels, steps = prepare(Image.fromarray(_sheet(50, 50)), MNIST_PREPROCESSING)

    assert not pixels.any()
    assert "no object found" in steps


def test_otsu_splits_two_levels():
    levels = np.array([40] * 100 + [200] * 30, dtype=np.uint8)

    assert 40 <= digits.otsu_threshold(levels) < 200


def test_otsu_ignores_empty_top_class():
    images, _ = load_split(MNIST, "test")

    thresholds = [digits.otsu_threshold(image.numpy()) for image in images[:200]]

    assert max(thresholds) < 255  # a split at 255 leaves the upper class empty


def test_evenly_lit_digits_keep_a_flat_background():
    images, _ = load_split(MNIST, "test")

    steps = [prepare(Image.fromarray(image.numpy()), MNIST_PREPROCESSING)[1] for image in images[:200]]

    assert not any("uneven lighting flattened" in image_steps for image_steps in steps)


def test_clean_mnist_digits_pass_nearly_unchanged():
    images, _ = load_split(MNIST, "test")

    errors = [np.abs(prepare(Image.fromarray(image.numpy()), MNIST_PREPROCESSING)[0][0].astype(int)
                     - image.numpy()).mean() for image in images[:20]]

    assert np.mean(errors) < 8  # levels out of 255: resampling blurs edges a little


def test_photo_digits_come_back_as_their_mnist_digit(tmp_path):
    written = photo_digits().write_photo_digits(tmp_path, count=10, seed=3)
    images, _ = load_split(MNIST, "test")

    prepared, naive = [], []
    for index, (path, _) in enumerate(written):
        decoded, _, size = read_image(path, MNIST_PREPROCESSING.draft_size)
        pixels, _ = prepare(decoded, MNIST_PREPROCESSING, size)
        prepared.append(_correlation(pixels[0], images[index].numpy()))
        resized = np.asarray(Image.open(path).convert("L").resize((28, 28)))
        naive.append(_correlation(resized, images[index].numpy()))

    assert np.mean(prepared) > 0.85
    assert min(prepared) > 0.5
    assert np.mean(naive) < 0.2  # without preprocessing a photo does not resemble its digit


def test_photo_digit_generator_is_deterministic(tmp_path):
    module = photo_digits()

    first = module.write_photo_digits(tmp_path / "first", count=5, seed=1)
    second = module.write_photo_digits(tmp_path / "second", count=5, seed=1)

    for (path_one, label_one), (path_two, label_two) in zip(first, second):
        assert path_one.read_bytes() == path_two.read_bytes()
        assert label_one == label_two
    assert (tmp_path / "first" / "labels.csv").read_text().startswith("file,label\n")


def test_folder_images_resize_to_training_size():
    preprocessing = Preprocessing("folder", 3, (16, 16), 0.5, 0.5)
    image = Image.fromarray(np.zeros((30, 40), dtype=np.uint8))

    pixels, steps = prepare(image, preprocessing)

    assert pixels.shape == (3, 16, 16)
    assert "resized from 30x40 to 16x16" in steps


def test_scene_keeps_its_size():
    preprocessing = Preprocessing("mnist-scenes", 1, None, 0.0484, 0.1984)
    sheet = _sheet(65, 97)
    sheet[20:40, 30:36] = 10

    pixels, steps = prepare(Image.fromarray(sheet), preprocessing)

    assert pixels.shape == (1, 65, 97)
    assert "inverted (light background)" in steps
