"""Tests for segmentation prediction: masks at the input's exact size, palette PNGs, overlays, pixel counts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import tiny_run
from torch import nn

import neuralab
from neuralab.cli import main
from neuralab.data.sources import MNIST, load_split
from neuralab.predict import PredictionWarning, Predictor, Segmentation
from neuralab.predict.outputs import PALETTE, mask_image, voc_palette
from neuralab.predict.preprocess import normalize


class AllBackground(nn.Module):
    """A stand-in segmenter whose class 0 wins on every pixel."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], self.num_classes, *images.shape[2:])
        logits[:, 0] = 1.0
        return logits


@pytest.fixture(scope="module")
def unet_run():
    """The tiny U-Net run, trained before any test captures the output (training prints its progress)."""
    return tiny_run("unet")


@pytest.fixture(scope="module")
def predictor(unet_run) -> Predictor:
    return neuralab.load(unet_run)


def _scene(height: int = 65, width: int = 97) -> Image.Image:
    """Return two MNIST digits as dark ink on light paper, on a sheet of `height` x `width`."""
    images, _ = load_split(MNIST, "test")
    sheet = np.zeros((height, width), dtype=np.uint8)
    sheet[2:30, 2:30] = images[0].numpy()
    bottom, right = height - 2, width - 2
    sheet[bottom - 28:bottom, right - 28:right] = np.maximum(sheet[bottom - 28:bottom, right - 28:right],
                                                             images[1].numpy())
    return Image.fromarray(235 - (sheet.astype(np.float32) * 0.8).astype(np.uint8))


def test_mask_has_the_input_size(predictor):
    result = predictor.predict(_scene(65, 97))

    assert isinstance(result, Segmentation)
    assert result.mask.shape == (65, 97)
    assert result.size == (65, 97)
    assert sum(result.class_pixels.values()) == 65 * 97
    assert list(result.class_pixels) == list(predictor.classes)


def test_mask_is_argmax_of_model_outputs(predictor):
    result = predictor.predict(_scene(40, 52))

    inputs = normalize(torch.from_numpy(result.pixels)[None], predictor.preprocessing)
    with torch.no_grad():
        expected = predictor.model(inputs).argmax(dim=1)[0].numpy()
    np.testing.assert_array_equal(result.mask, expected)


def test_all_background_mask_warns(predictor):
    stand_in = Predictor(AllBackground(len(predictor.classes)), predictor.metadata)

    with pytest.warns(PredictionWarning, match=r"<input 0>: every pixel is predicted as 'background'"):
        result = stand_in.predict([_scene()])[0]

    assert result.all_background


def test_palette_mask_keeps_class_indices(tmp_path):
    mask = np.random.default_rng(0).integers(0, 11, size=(65, 97)).astype(np.uint8)

    mask_image(mask).save(tmp_path / "mask.png")

    stored = Image.open(tmp_path / "mask.png")
    assert stored.mode == "P"
    assert stored.size == (97, 65)
    np.testing.assert_array_equal(np.array(stored), mask)


def test_voc_palette_starts_with_known_colours():
    assert voc_palette(4).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert len({tuple(colour) for colour in PALETTE}) == 256


def test_cli_writes_mask_overlay_and_counts(unet_run, tmp_path, capsys):
    _scene(65, 97).save(tmp_path / "scene.png")
    output_dir = tmp_path / "out"

    status = main(["predict", str(unet_run), str(tmp_path / "scene.png"), "--output-dir", str(output_dir),
                   "--format", "json"])

    (row,) = json.loads(capsys.readouterr().out)
    mask = Image.open(output_dir / "scene.mask.png")
    overlay = Image.open(output_dir / "scene.overlay.png")
    assert status == 0
    assert row["mask"] == str(output_dir / "scene.mask.png")
    assert (mask.mode, mask.size) == ("P", (97, 65))
    assert (overlay.mode, overlay.size) == ("RGB", (97, 65))
    assert sum(row["class_pixels"].values()) == 65 * 97
    counts = np.bincount(np.array(mask).ravel(), minlength=len(row["class_pixels"]))
    assert counts.tolist() == list(row["class_pixels"].values())
