"""Tests for segmentation end to end: tiny U-Net runs on mnist-scenes and on image folders, and their metrics."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuralab.cli import main
from neuralab.data import scenes
from neuralab.data.batches import BatchLoader
from neuralab.nn import build_loss
from neuralab.training.engine import Trainer
from neuralab.training.evaluation import evaluate_segmenter

# A U-Net small enough to train one epoch on a few dozen scenes in about a second. Batches of 2 give
# the one_cycle schedule of the recipe several steps even on a folder of a few images.
TINY_UNET = ["--model-option", "base_width=4", "--model-option", "depth=2"]
FOLDER_BATCHES = ["--batch-size", "2", "--eval-batch-size", "4"]
MEAN_IOU_KEYS = ("mean_iou", "mean_iou_without_background", "mean_dice", "per_class", "absent_classes")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(scenes.CACHE_DIR_VARIABLE, str(tmp_path / "cache"))


def _numbers(value) -> list[float]:
    """Return every float nested in a JSON value."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [number for item in value.values() for number in _numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return []


def _run_dir(runs: Path) -> Path:
    (run,) = runs.iterdir()
    return run


def _write_folder(root: Path, masks: dict[str, np.ndarray]) -> None:
    """Write RGB images whose red channel follows the mask, and the masks as palette PNGs."""
    for stem, values in masks.items():
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        red = np.where(values == 1, 250, np.where(values == 2, 120, 10)).astype(np.uint8)
        Image.fromarray(np.stack([red, red // 2, 255 - red], axis=-1)).save(root / "images" / f"{stem}.png")
        mask = Image.frombytes("P", (values.shape[1], values.shape[0]), values.astype(np.uint8).tobytes())
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [255, 255, 255] * 253)
        mask.save(root / "masks" / f"{stem}.png")


def _random_masks(count: int, seed: int, size: int = 12) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    return {f"sample{index:02d}": generator.choice([0, 1, 2, 255], size=(size, size), p=[0.5, 0.2, 0.2, 0.1])
            for index in range(count)}


def test_scenes_run_writes_iou_summary(tmp_path, capsys):
    runs = tmp_path / "runs"

    status = main(["train", "mnist-scenes-unet", "--train-scenes", "48", "--val-scenes", "16", "--epochs", "1",
                   "--batch-size", "16", "--eval-batch-size", "64", "--test-subset", "32", *TINY_UNET,
                   "--output-dir", str(runs)])

    output = capsys.readouterr().out
    summary = json.loads((_run_dir(runs) / "summary.json").read_text())
    assert status == 0
    assert "mean IoU without background" in output
    assert summary["task"] == "segmentation"
    for key in MEAN_IOU_KEYS:
        assert key in summary
    assert len(summary["per_class"]["iou"]) == 11
    assert summary["classes"][:2] == ["background", "0"]
    assert summary["test_samples"] == 32
    assert summary["test_pixels"] == 32 * 64 * 64
    assert all(math.isfinite(number) for number in _numbers(summary))


def test_folder_run_ignores_255(tmp_path, capsys):
    root = tmp_path / "folder"
    _write_folder(root, _random_masks(10, seed=0))
    test_masks = _random_masks(3, seed=1)
    _write_folder(root / "test", test_masks)
    (root / "classes.txt").write_text("background\nred\ndark\n")
    runs = tmp_path / "runs"

    status = main(["train", "mnist-scenes-unet", "--dataset", "folder", "--data-dir", str(root), "--val-size", "2",
                   "--epochs", "1", *FOLDER_BATCHES, *TINY_UNET, "--output-dir", str(runs)])
    summary = json.loads((_run_dir(runs) / "summary.json").read_text())

    counted = sum(int((values != 255).sum()) for values in test_masks.values())
    assert status == 0
    assert summary["classes"] == ["background", "red", "dark"]
    assert summary["ignore_index"] == 255
    assert summary["test_pixels"] == counted
    assert sum(map(sum, summary["confusion_matrix"])) == counted
    for key in MEAN_IOU_KEYS:
        assert key in summary
    assert all(math.isfinite(number) for number in _numbers(summary))


def test_evaluate_prints_per_class_iou(tmp_path, capsys):
    root = tmp_path / "folder"
    _write_folder(root, _random_masks(6, seed=0))
    _write_folder(root / "test", _random_masks(2, seed=1))
    runs = tmp_path / "runs"
    main(["train", "mnist-scenes-unet", "--dataset", "folder", "--data-dir", str(root), "--num-classes", "3",
          "--val-size", "1", "--epochs", "1", *FOLDER_BATCHES, *TINY_UNET, "--output-dir", str(runs)])
    summary = json.loads((_run_dir(runs) / "summary.json").read_text())
    capsys.readouterr()

    status = main(["evaluate", str(_run_dir(runs))])

    output = capsys.readouterr().out
    assert status == 0
    assert "pixel accuracy" in output
    assert "class    iou     dice" in output
    assert f"mean IoU {summary['mean_iou']:6.4f}, without background" in output


def test_folder_without_test_split(tmp_path, capsys):
    root = tmp_path / "folder"
    _write_folder(root, _random_masks(6, seed=0))
    runs = tmp_path / "runs"

    status = main(["train", "mnist-scenes-unet", "--dataset", "folder", "--data-dir", str(root), "--num-classes", "3",
                   "--val-size", "1", "--epochs", "1", *FOLDER_BATCHES, *TINY_UNET, "--output-dir", str(runs)])

    output = capsys.readouterr().out
    summary = json.loads((_run_dir(runs) / "summary.json").read_text())
    assert status == 0
    assert summary["test_samples"] == 0
    assert "has no test/ sub-folder" in summary["test_note"]
    assert "0 test images" in output


def test_loss_without_ignore_rejected(tmp_path, capsys):
    root = tmp_path / "folder"
    _write_folder(root, _random_masks(4, seed=0))
    runs = tmp_path / "runs"

    status = main(["train", "mnist-scenes-unet", "--dataset", "folder", "--data-dir", str(root), "--num-classes", "3",
                   "--val-size", "1", "--loss", "cross_entropy", *TINY_UNET, "--output-dir", str(runs)])

    assert status == 2
    assert "loss 'cross_entropy' cannot skip them; use --loss cross_entropy_dice" in capsys.readouterr().err
    assert not runs.exists()


def test_classifier_on_masks_rejected(tmp_path, capsys):
    root = tmp_path / "folder"
    _write_folder(root, _random_masks(4, seed=0))

    status = main(["train", "mnist-mlp", "--dataset", "folder", "--data-dir", str(root), "--num-classes", "3",
                   "--val-size", "1", "--augment", "none", "--output-dir", str(tmp_path / "runs")])

    assert status == 2
    assert ("model 'mlp' is a classification model but data set 'folder' is a segmentation data set"
            in capsys.readouterr().err)


class FixedPrediction(nn.Module):
    """Return logits whose arg-max is `prediction` for every image in the batch."""

    def __init__(self, prediction: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.prediction = prediction
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        one_hot = nn.functional.one_hot(self.prediction, self.num_classes).permute(2, 0, 1).float()
        return (10 * one_hot).expand(len(images), -1, -1, -1)  # (K, H, W) -> (B, K, H, W)


def test_evaluate_segmenter_by_hand():
    prediction = torch.tensor([[0, 1], [1, 2]])
    targets = torch.tensor([[[0, 1], [2, 255]]], dtype=torch.uint8)
    loss = build_loss("cross_entropy_dice", "logits")
    trainer = Trainer(FixedPrediction(prediction, 4), loss, None, None, torch.device("cpu"), ignore_index=255)
    loader = BatchLoader(torch.zeros(1, 1, 2, 2), targets, batch_size=1, shuffle=False)

    metrics = evaluate_segmenter(trainer, loader, ("background", "a", "b", "c"), ignore_index=255)

    # Counted pixels: (true 0, predicted 0), (1, 1), (2, 1); the 255 pixel counts nowhere.
    assert metrics["test_pixels"] == 3
    assert metrics["test_accuracy"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["iou"] == [1.0, pytest.approx(0.5), 0.0, None]
    assert metrics["per_class"]["dice"] == [1.0, pytest.approx(2 / 3), 0.0, None]
    assert metrics["mean_iou"] == pytest.approx(1.5 / 3)
    assert metrics["mean_iou_without_background"] == pytest.approx(0.5 / 2)
    assert metrics["absent_classes"] == ["c"]
