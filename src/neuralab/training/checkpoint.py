"""Atomic writes, resumable checkpoints and safetensors weights.

Checkpoints hold only tensors and plain Python types, so they load with
`torch.load(weights_only=True)` and loading never unpickles arbitrary objects. Every
file is written to a temporary name and renamed, so a run killed mid-write keeps its
previous good file.
"""

import json
import os
import pickle
import shlex
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

DDP_PREFIX = "module."
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be loaded; the message names the file."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual file mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a training state of tensors and plain types atomically."""
    atomic_write(path, lambda temporary: torch.save(state, temporary))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint weights-only; a corrupt or foreign file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # torch.load raises these for truncated, corrupt, foreign or unsafe (pickled-object) files.
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            TypeError, IndexError, AttributeError) as error:
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(error).__name__}: {_first_line(error)}); "
                              "the file is truncated, corrupt or not a neuralab checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != "neuralab-checkpoint":
        raise CheckpointError(f"{path}: not a neuralab checkpoint (no 'format: neuralab-checkpoint' entry)")
    return state


def strip_ddp_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return `state_dict` without the "module." prefix that DataParallel and DDP add."""
    if state_dict and all(key.startswith(DDP_PREFIX) for key in state_dict):
        return {key[len(DDP_PREFIX):]: value for key, value in state_dict.items()}
    return state_dict


def save_weights(path: Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    """Save the model's weights as safetensors, with `metadata` stored as JSON strings."""
    state = {key: value.detach().cpu().contiguous() for key, value in strip_ddp_prefix(model.state_dict()).items()}
    text = {key: json.dumps(value) for key, value in metadata.items()}
    atomic_write(path, lambda temporary: save_file(state, str(temporary), metadata=text))


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata) from a safetensors file written by `save_weights`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        state = load_file(str(path))
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_size))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read safetensors weights ({_first_line(error)}); the file is "
                              "truncated or corrupt. In a run directory, delete it and run `neuralab train "
                              f"--resume {shlex.quote(str(path.parent))}` to write it again from the checkpoint"
                              ) from None
    metadata = {key: json.loads(value) for key, value in header.get("__metadata__", {}).items()}
    return strip_ddp_prefix(state), metadata


def _first_line(error: Exception, limit: int = 100) -> str:
    """Return the error's first sentence, shortened: torch's messages run to several lines."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    sentence = text.split(". ")[0]
    return sentence if len(sentence) <= limit else sentence[:limit - 3] + "..."
