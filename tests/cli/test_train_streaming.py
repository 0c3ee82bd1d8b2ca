"""Tests for `neuralab train` on image folders decoded from disk per batch, with random crops and augmentation."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from neuralab.cli import main
from neuralab.data import streaming
from neuralab.inspect import report

# Metrics that measure time, so they differ between two otherwise identical runs.
TIMING_KEYS = {"seconds", "samples_per_second", "train_seconds", "test_seconds"}
# A U-Net of a few hundred parameters and batches of 2: one epoch on a dozen 12x12 images takes well under a second.
TINY_RUN = ["train", "mnist-scenes-unet", "--dataset", "folder", "--epochs", "1", "--val-size", "4",
            "--batch-size", "2", "--eval-batch-size", "3", "--model-option", "base_width=4",
            "--model-option", "depth=2", "--no-report"]


def _write_folder(root: Path, count: int, size: tuple[int, int], seed: int) -> Path:
    """Write `count` gray images whose brightness follows a random 3-class mask, and the masks."""
    generator = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for index in range(count):
        values = generator.integers(0, 3, size=size).astype(np.uint8)
        Image.fromarray((values * 100 + 20).astype(np.uint8)).save(root / "images" / f"{index:02d}.png")
        Image.fromarray(values).save(root / "masks" / f"{index:02d}.png")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    root = _write_folder(tmp_path / "folder", 12, (12, 12), seed=0)
    _write_folder(root / "test", 3, (12, 12), seed=1)
    (root / "classes.txt").write_text("background\nmid\nbright\n")
    return root


def _run(args: list[str], output_dir: Path) -> tuple[list[dict], dict, dict]:
    """Train with `args`; return (metrics rows, summary, configuration) of the one run directory."""
    status = main([*args, "--output-dir", str(output_dir)])
    assert status == 0
    (run_dir,) = output_dir.iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return rows, summary, config


def _without_timing(value: dict) -> dict:
    return {key: item for key, item in value.items() if key not in TIMING_KEYS}


def test_streamed_run_matches_in_memory_run(folder, tmp_path, capsys):
    base = [*TINY_RUN, "--data-dir", str(folder)]

    memory_rows, memory_summary, _ = _run(base, tmp_path / "memory")
    streamed_rows, streamed_summary, config = _run([*base, "--memory-budget-mb", "0", "--num-workers", "2"],
                                                   tmp_path / "streamed")

    assert config["data"]["memory_budget_mb"] == 0
    assert len(streamed_rows) == 1
    assert streamed_rows[0]["val_loss"] is not None
    assert [_without_timing(row) for row in streamed_rows] == [_without_timing(row) for row in memory_rows]
    assert _without_timing(streamed_summary) == _without_timing(memory_summary)
    assert streamed_summary["test_samples"] == 3


def test_crop_run_with_affine_augment(folder, tmp_path, capsys):
    rows, summary, config = _run([*TINY_RUN, "--data-dir", str(folder), "--crop", "--image-size", "8",
                                  "--augment", "affine", "--loss", "cross_entropy_dice"], tmp_path / "runs")

    assert config["data"]["crop"] is True
    assert rows[0]["val_accuracy"] is not None
    assert summary["test_pixels"] <= 3 * 12 * 12  # evaluated at the stored 12x12 size, minus ignored pixels
    assert summary["test_samples"] == 3
    assert "mean_iou" in summary


def test_augment_needs_loss_that_skips_ignore(folder, tmp_path, capsys):
    status = main([*TINY_RUN, "--data-dir", str(folder), "--augment", "shift", "--loss", "cross_entropy",
                   "--output-dir", str(tmp_path / "runs")])

    error = capsys.readouterr().err
    assert status != 0
    assert "augmentation labels the mask pixels it shifts in from outside an image with the ignore value 255, " \
           "but loss 'cross_entropy' cannot skip them" in error


def test_report_of_streamed_run(folder, tmp_path, capsys):
    base = [option for option in TINY_RUN if option != "--no-report"]

    status = main([*base, "--data-dir", str(folder), "--memory-budget-mb", "0", "--output-dir", str(tmp_path / "runs")])

    run_dir = next((tmp_path / "runs").iterdir())
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert status == 0
    assert 'id="segmentation"' in html
    assert "streamed from disk" not in html


def test_report_skips_test_images_of_mixed_sizes():
    split, note = report._in_memory(SimpleNamespace(mode=streaming.NATIVE))

    assert split is None
    assert "streamed from disk at their own sizes" in note
