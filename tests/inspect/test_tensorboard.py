"""Tests for `train --tensorboard`: the event file contains the run's scalars, histograms and images."""

import json
import sys

import pytest

from neuralab.cli import main

TINY_FLAGS = ["--epochs", "2", "--train-subset", "600", "--val-size", "100", "--test-subset", "200",
              "--batch-size", "100", "--stats-every", "2", "--no-report"]


def test_tensorboard_events_match_metrics(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                            reason="the tensorboard package is not installed")

    status = main(["train", "mnist-mlp", *TINY_FLAGS, "--tensorboard", "--output-dir", str(tmp_path)])

    (run_dir,) = tmp_path.iterdir()
    events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    stats = json.loads((run_dir / "stats.json").read_text(encoding="utf-8"))
    tags = events.Tags()
    assert status == 0
    train_loss = events.Scalars("loss/train")
    assert [event.step for event in train_loss] == [1, 2]
    assert [event.value for event in train_loss] == pytest.approx([row["train_loss"] for row in metrics], rel=1e-6)
    assert [event.value for event in events.Scalars("accuracy/val")] == pytest.approx(
        [row["val_accuracy"] for row in metrics], rel=1e-6)
    gradient = events.Scalars("gradient_norm/hidden.0")
    assert [event.step for event in gradient] == [row["step"] for row in stats["rows"]]
    assert [event.value for event in gradient] == pytest.approx(
        [row["grad_norm"]["hidden.0"] for row in stats["rows"]], rel=1e-6)
    assert "activations/hidden.1/dead_fraction" in tags["scalars"]
    assert "weights/hidden.0.weight" in tags["histograms"]
    assert [event.step for event in events.Histograms("weights/output.bias")] == [0, 1, 2]
    assert "first_layer/hidden.0" in tags["images"]


def test_tensorboard_missing_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError

    status = main(["train", "mnist-mlp", *TINY_FLAGS, "--tensorboard", "--output-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert status == 2
    assert "--tensorboard needs the tensorboard package, which is not installed" in err
    assert 'pip install "neuralab[tensorboard]"' in err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []
