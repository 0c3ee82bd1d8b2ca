"""Tests for `neuralab train --precision`, `--compile` and `--deterministic` on CPU, on a tiny MNIST folder.

torch.compile generates and builds C++ kernels at the first batch of each shape and mode, so
the compiled runs take 20-80 s on a 2-core machine although they train on 500 images. Their
batch sizes divide every split, which keeps the compiled graphs to one for training and one
for evaluation.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from neuralab.cli import main
from neuralab.models import build_model
from neuralab.training.inference import evaluate_run, load_model

# 500 training, 100 validation and 200 test images, in batches of 100 for every split.
TINY_FLAGS = ["--epochs", "2", "--val-size", "100", "--batch-size", "100", "--eval-batch-size", "100", "--no-report"]
ONE_TEST_IMAGE = 1 / 200


def _train(mnist_dir: Path, output_dir: Path, recipe: str, *extra: str) -> Path:
    status = main(["train", recipe, *TINY_FLAGS, "--data-dir", str(mnist_dir), "--output-dir", str(output_dir),
                   *extra])
    assert status == 0
    (run_dir,) = output_dir.iterdir()
    return run_dir


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _check_finite(run_dir: Path) -> None:
    rows = _metrics(run_dir)
    assert len(rows) == 2
    for row in rows:
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert math.isfinite(row[key]), f"epoch {row['epoch']} {key} = {row[key]}"
    summary = _summary(run_dir)
    assert math.isfinite(summary["test_loss"])
    assert 0.3 < summary["test_accuracy"] <= 1.0  # well above chance (0.1) after 2 epochs on 500 images


@pytest.mark.parametrize("recipe", ["mnist-mlp", "mnist-cnn"])
def test_bf16_run_has_finite_metrics(recipe, mnist_dir, tmp_path):
    run_dir = _train(mnist_dir, tmp_path / "runs", recipe, "--precision", "bf16")

    config = (run_dir / "config.yaml").read_text(encoding="utf-8")
    _check_finite(run_dir)
    assert "precision: bf16" in config


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["mnist-mlp", "mnist-cnn"])
def test_compiled_run_loads_uncompiled(recipe, mnist_dir, tmp_path):
    run_dir = _train(mnist_dir, tmp_path / "runs", recipe, "--compile")

    _check_finite(run_dir)
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    plain = build_model(state["config"]["model"]["name"], (1, 28, 28), 10, **state["config"]["model"]["options"])
    plain.load_state_dict(state["model"])  # strict: no "_orig_mod." prefix from torch.compile
    model, _, _ = load_model(run_dir)
    assert not any(isinstance(module, torch._dynamo.eval_frame.OptimizedModule) for module in model.modules())
    # The uncompiled model from model.safetensors scores what the compiled one did, within one image.
    recomputed = evaluate_run(run_dir)
    assert recomputed["test_accuracy"] == pytest.approx(_summary(run_dir)["test_accuracy"], abs=ONE_TEST_IMAGE)
    assert recomputed["test_loss"] == pytest.approx(_summary(run_dir)["test_loss"], abs=1e-3)


def test_fp16_on_cpu_rejected(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"

    status = main(["train", "mnist-mlp", *TINY_FLAGS, "--data-dir", str(mnist_dir), "--output-dir", str(output_dir),
                   "--precision", "fp16", "--device", "cpu"])

    err = capsys.readouterr().err
    assert status == 2
    assert "neuralab train: error: precision 'fp16' is not supported on CPU" in err
    assert not output_dir.exists()


def test_deterministic_cpu_run_unchanged(mnist_dir, tmp_path):
    try:
        deterministic = _train(mnist_dir, tmp_path / "deterministic", "mnist-mlp", "--deterministic")
        enabled_during_run = torch.are_deterministic_algorithms_enabled()
        default = _train(mnist_dir, tmp_path / "default", "mnist-mlp")
        enabled_after_default_run = torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)

    assert enabled_during_run
    assert not enabled_after_default_run
    # CPU training is deterministic already, so the flag changes no number.
    for row, expected in zip(_metrics(deterministic), _metrics(default), strict=True):
        assert row["val_loss"] == expected["val_loss"]
        assert row["train_loss"] == expected["train_loss"]
