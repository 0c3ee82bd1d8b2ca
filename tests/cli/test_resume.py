"""Tests for `neuralab train --resume`: an interrupted run resumes to the same weights, a finished one extends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from neuralab.cli import main
from neuralab.data.sources import DATA_DIR_VARIABLE

TIMING_KEYS = {"seconds", "samples_per_second"}
INTERRUPT_TIMEOUT_S = 120  # far above the few seconds the whole run takes on a busy 2-core machine

# An epoch of 29,000 built-in MNIST images at batch 128 took about 0.4 s on one thread of a 2-core
# machine, which leaves a SIGINT sent after epoch 2 time to land in epochs 3 to 6, even when other
# jobs load the machine and delay the test's polling. The schedule,
# augmentation and optimizer are given explicitly so that a change to the recipe cannot remove
# what resuming must restore.
LONG_RUN_FLAGS = ["mnist-mlp", "--epochs", "6", "--no-report", "--train-subset", "30000", "--val-size", "1000",
                  "--test-subset", "500", "--batch-size", "128", "--optimizer", "adamw", "--scheduler", "one_cycle",
                  "--augment", "shift", "--seed", "3"]


def _only_run_dir(output_dir: Path) -> Path:
    runs = list(output_dir.iterdir())
    assert len(runs) == 1, f"expected one run directory in {output_dir}, found {runs}"
    return runs[0]


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMING_KEYS} for row in rows]


def _interrupt_after_two_epochs(output_dir: Path) -> tuple[int, str, Path]:
    """Start the long run in a subprocess, send SIGINT once 2 epochs are logged; return (status, stderr, run dir)."""
    environment = {key: value for key, value in os.environ.items() if key != DATA_DIR_VARIABLE}
    process = subprocess.Popen([sys.executable, "-m", "neuralab", "train", *LONG_RUN_FLAGS,
                                "--output-dir", str(output_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    deadline = time.monotonic() + INTERRUPT_TIMEOUT_S
    try:
        while time.monotonic() < deadline and process.poll() is None:
            runs = list(output_dir.glob("*")) if output_dir.is_dir() else []
            if runs and len(_metrics(runs[0])) >= 2:
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.02)
        _, stderr = process.communicate(timeout=INTERRUPT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr, _only_run_dir(output_dir)


def _tiny_args(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["train", "mnist-mlp", "--epochs", "4", "--val-size", "100", "--batch-size", "64",
            "--scheduler", "one_cycle", "--no-report", "--data-dir", str(data_dir), "--output-dir", str(output_dir),
            *extra]


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(DATA_DIR_VARIABLE, raising=False)
    interrupted_dir, reference_dir = tmp_path / "interrupted", tmp_path / "reference"

    status, stderr, run_dir = _interrupt_after_two_epochs(interrupted_dir)
    logged_epochs = len(_metrics(run_dir))
    if status == 0 and logged_epochs == 6:
        pytest.skip("the run finished before SIGINT landed, because other jobs delayed this test's polling")
    resume_status = main(["train", "--resume", str(run_dir)])
    resume_out = capsys.readouterr().out
    reference_status = main(["train", *LONG_RUN_FLAGS, "--output-dir", str(reference_dir)])
    reference = _only_run_dir(reference_dir)

    assert status == 130, stderr
    assert f"Resume with:\n  neuralab train --resume {run_dir}" in stderr
    assert 2 <= logged_epochs < 6
    assert resume_status == 0
    assert f"resuming {run_dir} at epoch {logged_epochs + 1} of 6" in resume_out
    assert reference_status == 0
    assert _without_timing(_metrics(run_dir)) == _without_timing(_metrics(reference))
    resumed_weights = load_file(str(run_dir / "model.safetensors"))
    reference_weights = load_file(str(reference / "model.safetensors"))
    assert resumed_weights.keys() == reference_weights.keys()
    for key, value in reference_weights.items():
        assert torch.equal(resumed_weights[key], value), f"{key} differs after resuming"


def test_finished_run_extends(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir)) == 0
    run_dir = _only_run_dir(output_dir)
    first_rows = _metrics(run_dir)
    capsys.readouterr()

    status = main(["train", "--resume", str(run_dir), "--epochs", "6"])

    out = capsys.readouterr().out
    rows = _metrics(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert status == 0
    assert f"resuming {run_dir} at epoch 5 of 6" in out
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[:4] == first_rows
    # one_cycle restarts over the 2 added epochs, so the rate rises again from its near-zero end.
    assert rows[4]["lr"] > 100 * rows[3]["lr"]
    assert summary["epochs"] == 6
    assert "epochs: 6" in (run_dir / "config.yaml").read_text(encoding="utf-8")
    assert list(output_dir.iterdir()) == [run_dir]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("schedule", [["--scheduler", "step", "--gamma", "0.5"], ["--scheduler", "none"]],
                         ids=["step", "none"])
@pytest.mark.parametrize("device", DEVICES)
def test_extended_run_equals_longer_run(mnist_dir, tmp_path, device, schedule):
    # With a step or no schedule, 1 epoch extended to 2 must equal 2 epochs in one go: dropout masks
    # and augmentation shifts continue from the random state saved in the checkpoint.
    flags = ["--dropout", "0.5", "--augment", "shift", *schedule, "--device", device, "--seed", "5"]
    short_dir, long_dir = tmp_path / "short", tmp_path / "long"
    assert main(_tiny_args(mnist_dir, short_dir, "--epochs", "1", *flags)) == 0
    assert main(_tiny_args(mnist_dir, long_dir, "--epochs", "2", *flags)) == 0
    extended, longer = _only_run_dir(short_dir), _only_run_dir(long_dir)

    status = main(["train", "--resume", str(extended), "--epochs", "2"])

    assert status == 0
    assert _without_timing(_metrics(extended)) == _without_timing(_metrics(longer))
    extended_weights = load_file(str(extended / "model.safetensors"))
    longer_weights = load_file(str(longer / "model.safetensors"))
    for key, value in longer_weights.items():
        assert torch.equal(extended_weights[key], value), f"{key} differs after extending"


def test_finished_run_not_retrained(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir, "--epochs", "1")) == 0
    run_dir = _only_run_dir(output_dir)
    weights_before = (run_dir / "model.safetensors").read_bytes()
    capsys.readouterr()

    status = main(["train", "--resume", str(run_dir)])

    out = capsys.readouterr().out
    assert status == 0
    assert f"{run_dir}: already trained for 1 epoch; pass --epochs N with N > 1" in out
    assert (run_dir / "model.safetensors").read_bytes() == weights_before


def test_resume_rewrites_deleted_weights(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir, "--epochs", "1")) == 0
    run_dir = _only_run_dir(output_dir)
    weights_before = load_file(str(run_dir / "model.safetensors"))
    (run_dir / "model.safetensors").unlink()
    capsys.readouterr()

    status = main(["train", "--resume", str(run_dir)])

    out = capsys.readouterr().out
    weights_after = load_file(str(run_dir / "model.safetensors"))
    assert status == 0
    assert f"{run_dir}: training finished at epoch 1; writing the missing weights and summary" in out
    assert weights_after.keys() == weights_before.keys()
    for key, value in weights_before.items():
        assert torch.equal(weights_after[key], value), f"{key} differs from the weights written at the end"


def test_resume_rejects_new_settings(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir, "--epochs", "1")) == 0
    run_dir = _only_run_dir(output_dir)
    capsys.readouterr()

    status = main(["train", "--resume", str(run_dir), "--lr", "0.1"])

    err = capsys.readouterr().err
    assert status == 2
    assert "--compile, --report and --tensorboard may change, got lr" in err


def test_resume_missing_run_dir(tmp_path, capsys):
    missing = tmp_path / "no-such-run"

    status = main(["train", "--resume", str(missing)])

    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == f"neuralab train: error: {missing}: run directory not found"


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_damaged_checkpoint(mnist_dir, tmp_path, capsys, damage):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir, "--epochs", "1")) == 0
    run_dir = _only_run_dir(output_dir)
    checkpoint = run_dir / "checkpoint.pt"
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    else:
        checkpoint.unlink()
    capsys.readouterr()

    status = main(["train", "--resume", str(run_dir), "--epochs", "2"])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"neuralab train: error: {checkpoint}: ")
    assert len(err.strip().splitlines()) == 1
