"""Tests for atomic writes, weights-only checkpoints, safetensors weights and the DDP prefix."""

import io
import pickletools
import re
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim import lr_scheduler

from neuralab.training.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
    strip_ddp_prefix,
    write_text,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


class Wrapped(nn.Module):
    """Stands in for DistributedDataParallel, whose state_dict keys start with "module."."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _training_state() -> dict:
    """Return a state shaped like a neuralab checkpoint after a few Adam steps under one_cycle."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=10, cycle_momentum=False)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    return {
        "format": "neuralab-checkpoint",
        "epoch": 3,
        "config": {"train": {"epochs": 4, "seed": 0}, "optim": {"lr": 0.01, "scheduler": "one_cycle"}},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"data": torch.Generator().manual_seed(1).get_state(), "torch": torch.get_rng_state()},
        "history": [{"epoch": 1, "train_loss": 0.5, "val_loss": None}],
    }


def test_atomic_write_keeps_previous(tmp_path):
    path = tmp_path / "summary.json"
    write_text(path, "previous\n")

    def failing_writer(temporary):
        temporary.write_text("half of the new cont", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing_writer)

    assert path.read_text(encoding="utf-8") == "previous\n"
    assert [item.name for item in tmp_path.iterdir()] == ["summary.json"]


def test_atomic_write_keeps_previous_on_interrupt(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_text(path, "old\n")

    def interrupted_writer(temporary):
        temporary.write_text("new", encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted_writer)

    assert path.read_text(encoding="utf-8") == "old\n"
    assert len(list(tmp_path.iterdir())) == 1


def test_atomic_write_replaces(tmp_path):
    path = tmp_path / "config.yaml"
    write_text(path, "old\n")

    write_text(path, "new\n")

    assert path.read_text(encoding="utf-8") == "new\n"


def test_checkpoint_round_trip(tmp_path):
    state = _training_state()
    path = tmp_path / "checkpoint.pt"

    save_checkpoint(path, state)
    loaded = load_checkpoint(path)

    assert loaded["epoch"] == 3
    assert loaded["history"] == state["history"]
    assert loaded["scheduler"]["total_steps"] == 10
    assert torch.equal(loaded["rng"]["data"], state["rng"]["data"])
    for key, value in state["model"].items():
        assert torch.equal(loaded["model"][key], value), key


def test_checkpoint_loads_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _training_state())

    state = torch.load(path, map_location="cpu", weights_only=True)

    assert state["format"] == "neuralab-checkpoint"


def test_checkpoint_restores_optimizer(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _training_state())
    state = load_checkpoint(path)
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])

    assert optimizer.state_dict()["state"][0]["step"].item() == 3


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _training_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CheckpointError, match=re.escape(f"{path}: cannot load checkpoint")):
        load_checkpoint(path)


def test_corrupt_checkpoint_pickle(tmp_path):
    # Damage inside data.pkl (the archive stores it uncompressed): the first BINGET opcode now
    # reads memo entry 254, which the pickle never stored.
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _training_state())
    data = bytearray(path.read_bytes())
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    pickle_bytes = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    pickle_start = bytes(data).find(pickle_bytes)
    binget = next(position for opcode, _, position in pickletools.genops(pickle_bytes) if opcode.name == "BINGET")
    data[pickle_start + binget + 1] = 254
    path.write_bytes(bytes(data))

    with pytest.raises(CheckpointError, match=re.escape(f"{path}: cannot load checkpoint")):
        load_checkpoint(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": _model().state_dict()}, path)

    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a neuralab checkpoint")):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"

    with pytest.raises(FileNotFoundError, match=re.escape(f"{path}: checkpoint not found")):
        load_checkpoint(path)


def test_weights_round_trip(tmp_path):
    model = _model()
    path = tmp_path / "model.safetensors"
    metadata = {"format": "neuralab-weights", "model": {"name": "mlp", "in_shape": [1, 2, 2]}, "head": "logits"}

    save_weights(path, model, metadata)
    state, loaded_metadata = load_weights(path)

    assert loaded_metadata == metadata
    assert state.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_truncated_weights(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(path, _model(), {"format": "neuralab-weights"})
    data = path.read_bytes()
    path.write_bytes(data[:-20])

    with pytest.raises(CheckpointError, match=re.escape(f"{path}: cannot read safetensors weights")):
        load_weights(path)


def test_weights_header_only(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00")

    with pytest.raises(CheckpointError, match=re.escape(f"{path}: cannot read safetensors weights")):
        load_weights(path)


def test_missing_weights(tmp_path):
    path = tmp_path / "model.safetensors"

    with pytest.raises(FileNotFoundError, match=re.escape(f"{path}: weights file not found")):
        load_weights(path)


def test_prefixed_weights_load_into_plain_model(tmp_path):
    wrapped = Wrapped(_model())
    path = tmp_path / "model.safetensors"
    # A state_dict saved straight from the wrapper, without going through save_weights.
    save_file({key: value.contiguous() for key, value in wrapped.state_dict().items()}, str(path))

    state, _ = load_weights(path)
    plain = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    plain.load_state_dict(state)

    assert all(key.startswith("module.") for key in load_file(str(path)))
    for key, value in wrapped.module.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value), key


def test_save_weights_strips_prefix(tmp_path):
    wrapped = Wrapped(_model())
    path = tmp_path / "model.safetensors"

    save_weights(path, wrapped, {})

    assert set(load_file(str(path))) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_strip_prefix_needs_every_key():
    value = torch.zeros(1)
    mixed = {"module.weight": value, "bias": value}

    assert list(strip_ddp_prefix({"module.a": value, "module.b.c": value})) == ["a", "b.c"]
    assert strip_ddp_prefix(mixed) is mixed
    assert strip_ddp_prefix({}) == {}
