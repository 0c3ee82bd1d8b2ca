"""Tests for the device helpers: precision checks, the gradient scaler, determinism, compilation, threads and float mode."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from neuralab.models import build_model
from neuralab.training.devices import (
    autocast_dtype,
    build_grad_scaler,
    choose_threads,
    compile_model,
    flush_subnormals,
    set_deterministic,
)

CPU = torch.device("cpu")


def test_autocast_dtype_of_each_precision():
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16


def test_autocast_rejects_fp16_on_cpu():
    with pytest.raises(ValueError, match="precision 'fp16' is not supported on CPU.*use --precision bf16"):
        autocast_dtype("fp16", CPU)


def test_autocast_rejects_unknown_precision():
    with pytest.raises(ValueError, match="unknown precision 'fp8'; valid precisions: fp32, bf16, fp16"):
        autocast_dtype("fp8", CPU)


def test_grad_scaler_only_for_fp16_on_gpu():
    assert build_grad_scaler("fp32", CPU) is None
    assert build_grad_scaler("bf16", CPU) is None
    assert build_grad_scaler("fp16", CPU) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_grad_scaler_for_fp16_on_cuda():
    scaler = build_grad_scaler("fp16", torch.device("cuda"))

    assert isinstance(scaler, torch.amp.GradScaler)
    assert scaler.is_enabled()


def test_set_deterministic_switches_torch_state():
    try:
        set_deterministic(True, CPU)
        enabled = torch.are_deterministic_algorithms_enabled()
        benchmark = torch.backends.cudnn.benchmark
        set_deterministic(False, CPU)
        disabled = torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)

    assert enabled
    assert not benchmark
    assert not disabled


def test_compiled_model_shares_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    compiled = compile_model(model)

    # The compiled wrapper's keys carry "_orig_mod.", which is why checkpoints save the plain module.
    assert set(compiled.state_dict()) == {f"_orig_mod.{key}" for key in model.state_dict()}
    assert all(a is b for a, b in zip(compiled.parameters(), model.parameters()))


def test_threads_split_between_processes():
    cnn = build_model("cnn", (1, 28, 28), 10)
    cores = os.cpu_count() or 1
    mlp = build_model("mlp", (1, 28, 28), 10)

    assert choose_threads(cnn, (1, 28, 28), 128) == cores
    assert choose_threads(cnn, (1, 28, 28), 128, processes=cores) == 1
    assert choose_threads(cnn, (1, 28, 28), 128, processes=cores + 1) == 1
    assert choose_threads(mlp, (1, 28, 28), 64, processes=2) == 1


def test_flush_subnormals_on_this_thread():
    smallest_normal = torch.finfo(torch.float32).tiny

    flush_subnormals()
    product = torch.tensor([smallest_normal]) * torch.tensor([0.5])  # a subnormal result

    assert product.item() == 0.0


# A fresh process prepares a 2-thread CNN session. Then it multiplies a tensor large enough that both
# threads compute part of it, and every product is subnormal, so none may survive flushing.
_PREPARE_THEN_MULTIPLY = """
import torch
from neuralab.config import load_recipe, merge
from neuralab.training import session as sessions
config = merge(load_recipe("mnist-cnn-fast"), {"data": {"train_subset": 600, "test_subset": 200, "val_size": 100},
                                               "train": {"threads": 2}}, source="test")
sessions.prepare(config)
product = torch.full((4_000_000,), 1e-20) * 1e-19
print(int((product != 0).sum()), torch.get_num_threads())
"""


def test_prepared_session_flushes_on_every_thread():
    result = subprocess.run([sys.executable, "-c", _PREPARE_THEN_MULTIPLY], capture_output=True, text=True,
                            timeout=120, check=False)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "2"]  # no subnormal left, computed on 2 threads

