"""Tests for distributed training: torchrun's environment, and 2-process CPU (gloo) launches of `neuralab train`.

Each launch starts `python -m torch.distributed.run --standalone --nproc-per-node=2`, which
took 10-25 s on a busy 2-core machine, most of it three processes importing torch.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import write_split
from neuralab.cli import main
from neuralab.data.sources import DATA_DIR_VARIABLE
from neuralab.training import engine
from neuralab.training.distributed import SINGLE_PROCESS, from_environment, run_on_every_rank, run_on_main

LAUNCH_TIMEOUT_S = 300  # far above the 10-25 s a launch took on a busy 2-core machine
PROCESSES = 2
TOLERANCE = 1e-4
METRIC_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")

# 600 training images minus 99 held out leave 501. At a global batch of 2 x 32, that is 7 full
# steps and a last step of 53 images, which the ranks split 27/26. Every launch thus checks the
# loss weighting for unequal shares. The 99 validation images split 50/49.
PER_PROCESS_BATCH = 32
# The HTML report is left out: it takes several seconds and does not depend on the process count.
COMMON_FLAGS = ["mnist-mlp", "--epochs", "2", "--val-size", "99", "--eval-batch-size", "40", "--no-report"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, mnist_slice) -> Path:
    """A data folder holding 600 training and 200 test MNIST images, shared by this module's launches."""
    folder = tmp_path_factory.mktemp("mnist-data")
    write_split(folder, "train", *mnist_slice["train"])
    write_split(folder, "t10k", *mnist_slice["test"])
    return folder


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, data_dir) -> Path:
    """One process trained on the global batch of the distributed launches (2 x 32)."""
    output_dir = tmp_path_factory.mktemp("single")
    status = main(["train", *COMMON_FLAGS, "--data-dir", str(data_dir), "--output-dir", str(output_dir),
                   "--batch-size", str(PER_PROCESS_BATCH * PROCESSES), "--eval-batch-size", str(40 * PROCESSES)])
    assert status == 0
    return _only_run_dir(output_dir)


def _only_run_dir(output_dir: Path) -> Path:
    runs = list(output_dir.iterdir())
    assert len(runs) == 1, f"expected one run directory in {output_dir}, found {runs}"
    return runs[0]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _torchrun(*train_args: str) -> subprocess.CompletedProcess:
    """Run `neuralab train` in 2 CPU processes under torchrun; return the finished launch."""
    environment = {key: value for key, value in os.environ.items() if key != DATA_DIR_VARIABLE}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={PROCESSES}",
               "-m", "neuralab", "train", "--device", "cpu", *train_args]
    return subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=environment,
                          check=False)


def _check_clean(launch: subprocess.CompletedProcess) -> None:
    assert launch.returncode == 0, f"torchrun exited with {launch.returncode}:\n{launch.stderr[-3000:]}"
    assert "terminate called" not in launch.stderr, launch.stderr[-3000:]
    assert "Traceback" not in launch.stderr, launch.stderr[-3000:]


def test_environment_without_torchrun():
    assert from_environment({}) == SINGLE_PROCESS
    assert not SINGLE_PROCESS.enabled
    assert SINGLE_PROCESS.is_main


def test_environment_of_torchrun_rank():
    context = from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})

    assert (context.rank, context.world_size, context.local_rank, context.local_world_size) == (3, 4, 1, 2)
    assert context.enabled
    assert not context.is_main


def test_environment_rejects_bad_rank():
    with pytest.raises(ValueError, match="RANK must be an integer, got 'one'"):
        from_environment({"RANK": "one", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match=r"RANK must be in \[0, 2\) for WORLD_SIZE 2, got 2"):
        from_environment({"RANK": "2", "WORLD_SIZE": "2"})


def test_collectives_without_torchrun_call_directly():
    def fail() -> None:
        raise FileExistsError("taken")

    assert run_on_every_rank(lambda: 5, SINGLE_PROCESS) == 5
    assert run_on_main(lambda: 6, SINGLE_PROCESS) == 6
    with pytest.raises(FileExistsError, match="taken"):
        run_on_main(fail, SINGLE_PROCESS)


def test_rank_weights_give_one_process_gradient(monkeypatch):
    # Two ranks hold 27 and 26 samples of a global batch of 53. DDP averages their gradients, so
    # with each mean loss weighted, the average must equal the gradient of one process on all 53.
    monkeypatch.setattr(engine, "_world_size", lambda: PROCESSES)
    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(53, 5, generator=generator), torch.randint(0, 3, (53,), generator=generator)
    layer = nn.Linear(5, 3)
    shares = [(0, 27), (27, 53)]

    rank_gradients = []
    for first, last in shares:
        layer.zero_grad()
        loss = F.cross_entropy(layer(inputs[first:last]), targets[first:last])
        (loss * engine._rank_loss_weight(last - first, 53)).backward()
        rank_gradients.append(layer.weight.grad.clone())
    layer.zero_grad()
    F.cross_entropy(layer(inputs), targets).backward()

    assert engine._rank_loss_weight(27, 53) == pytest.approx(54 / 53)
    assert engine._rank_loss_weight(32, 64) == 1.0
    torch.testing.assert_close(sum(rank_gradients) / PROCESSES, layer.weight.grad)


@pytest.mark.parametrize("launch_number", [1, 2, 3])
def test_torchrun_matches_one_process(launch_number, data_dir, single_run, tmp_path):
    output_dir = tmp_path / "runs"

    launch = _torchrun(*COMMON_FLAGS, "--data-dir", str(data_dir), "--output-dir", str(output_dir),
                       "--batch-size", str(PER_PROCESS_BATCH))

    _check_clean(launch)
    assert launch.stdout.count("epoch 1/2") == 1, f"only rank 0 prints:\n{launch.stdout}"
    run_dir = _only_run_dir(output_dir)
    rows, expected_rows = _metrics(run_dir), _metrics(single_run)
    assert len(rows) == len(expected_rows) == 2
    for row, expected in zip(rows, expected_rows):
        for key in METRIC_KEYS:
            assert row[key] == pytest.approx(expected[key], abs=TOLERANCE), f"epoch {row['epoch']} {key}"
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    expected_summary = json.loads((single_run / "summary.json").read_text(encoding="utf-8"))
    assert summary["test_samples"] == expected_summary["test_samples"] == 200
    assert summary["test_loss"] == pytest.approx(expected_summary["test_loss"], abs=TOLERANCE)
    assert summary["test_accuracy"] == pytest.approx(expected_summary["test_accuracy"], abs=TOLERANCE)
    _check_resumes_in_one_process(run_dir, single_run)


def _check_resumes_in_one_process(run_dir: Path, single_run: Path) -> None:
    """Check that a distributed run's checkpoint matches one process's and trains on in one process."""
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    expected = torch.load(single_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert set(state["model"]) == set(expected["model"])  # no "module." prefix from DDP
    for key, value in state["model"].items():
        torch.testing.assert_close(value, expected["model"][key], atol=TOLERANCE, rtol=0, msg=key)

    status = main(["train", "--resume", str(run_dir), "--epochs", "3"])

    rows = _metrics(run_dir)
    assert status == 0
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert all(math.isfinite(row["val_loss"]) for row in rows)


def test_torchrun_resumes_one_process_run(single_run, tmp_path):
    run_dir = tmp_path / single_run.name
    shutil.copytree(single_run, run_dir)

    launch = _torchrun("--resume", str(run_dir), "--epochs", "3")

    _check_clean(launch)
    assert f"resuming {run_dir} at epoch 3 of 3" in launch.stdout
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 3
    assert not any(key.startswith("module.") for key in state["model"])
    assert [row["epoch"] for row in _metrics(run_dir)] == [1, 2, 3]


def test_torchrun_config_error_exits_2_on_every_rank(data_dir, tmp_path):
    output_dir = tmp_path / "runs"

    launch = _torchrun(*COMMON_FLAGS, "--data-dir", str(data_dir), "--output-dir", str(output_dir),
                       "--precision", "fp16")

    errors = [line for line in launch.stderr.splitlines() if line.startswith("neuralab train: error:")]
    assert launch.returncode != 0
    assert errors == [("neuralab train: error: precision 'fp16' is not supported on CPU: fp16 gradients need loss "
                       "scaling, which neuralab applies on GPUs only; use --precision bf16 (the range of fp32, no "
                       "scaling) or fp32")]
    # torchrun's failure table lists each rank's exit status as "exitcode  : N".
    assert re.findall(r"exitcode +: (-?\d+)", launch.stderr) == ["2"] * PROCESSES, launch.stderr[-3000:]
    assert not output_dir.exists()
