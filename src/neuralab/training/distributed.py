"""Distributed data-parallel training under torchrun: detect the launch, join and leave the process group.

torchrun starts one process per device and sets each process's rank through environment
variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE). A process started without
torchrun, or as the only process, is rank 0 of 1, and every function here then does nothing.
"""

import gc
import logging
import os
import pickle
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)

Result = TypeVar("Result")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a torchrun launch: global rank, local rank and process counts."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains, so gradients and metrics must be exchanged."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that prints and writes the run directory."""
        return self.rank == 0


SINGLE_PROCESS = DistributedContext()


def from_environment(environ: Mapping[str, str] = os.environ) -> DistributedContext:
    """Return the context that torchrun's environment variables describe, or SINGLE_PROCESS without them."""
    if "WORLD_SIZE" not in environ:
        return SINGLE_PROCESS
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        text = environ.get(name, "0" if name.endswith("RANK") else environ["WORLD_SIZE"])
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {text!r}; "
                             "start distributed runs with torchrun, which sets it") from None
    context = DistributedContext(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
    if not 0 <= context.rank < context.world_size:
        raise ValueError(f"environment variable RANK must be in [0, {context.world_size}) for WORLD_SIZE "
                         f"{context.world_size}, got {context.rank}")
    return context


def process_device(context: DistributedContext, device: torch.device) -> torch.device:
    """Return the device this process trains on: GPU number LOCAL_RANK on CUDA, else `device` itself."""
    if not context.enabled:
        return device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"distributed training supports devices cpu and cuda, got {device.type!r}; "
                         "pass --device cpu or --device cuda")
    if device.type == "cuda":
        return torch.device("cuda", context.local_rank)
    return device


@contextmanager
def process_group(context: DistributedContext) -> Iterator[None]:
    """Join torchrun's process group for the block, then leave it, also on errors.

    The group sends CPU tensors through gloo and, on a machine with CUDA, CUDA tensors through
    nccl, so it can start before the configuration names the device. Leaving destroys the
    group only after the block's objects are freed. When a DDP model was still alive at that
    point, about 1 gloo launch in 3 aborted at exit ("terminate called without an active
    exception"). The block must therefore create the model, optimizer and data inside a
    function call, whose frame is gone when the block ends.
    """
    if not context.enabled:
        yield
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(context.local_rank)  # nccl and object collectives use the current device
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend)  # rendezvous through MASTER_ADDR and MASTER_PORT, which torchrun sets
    logger.info("rank %d of %d joined the %s process group", context.rank, context.world_size, backend)
    try:
        yield
    except BaseException as error:
        # The traceback's frames still reference the model and optimizer. Clearing their locals frees them.
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        gc.collect()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """Return `model` inside DistributedDataParallel when several processes train, else `model` itself."""
    if not context.enabled:
        return model
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def sync_batch_norm(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """Return `model` with batch statistics computed over the global batch, where PyTorch supports it (CUDA).

    SyncBatchNorm keeps the parameter and buffer names, so checkpoints load in either mode.
    """
    if context.enabled and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # NOTE: SyncBatchNorm rejects CPU modules (PyTorch 2.14), so on CPU each rank normalizes with the
    # statistics of its own share of the batch, and a BatchNorm model trains slightly differently
    # from one process with the whole batch.
    return model


def run_on_every_rank(function: Callable[[], Result], context: DistributedContext) -> Result:
    """Call `function` on every rank and return its result; if it raised on any rank, raise on every rank.

    Each rank raises its own exception, or else the exception of the lowest failing rank. The
    ranks thus stop together: torchrun ends the remaining processes with SIGTERM as soon as one
    fails, so a rank that stopped alone would leave the others killed rather than exited.
    """
    try:
        result, error = function(), None
    except Exception as caught:  # noqa: BLE001  (re-raised below, on this rank and every other)
        result, error = None, caught
    if context.enabled:
        errors: list[Exception | None] = [None] * context.world_size
        dist.all_gather_object(errors, None if error is None else _picklable(error))
        first_error = next((item for item in errors if item is not None), None)
        if error is None and first_error is not None:
            raise first_error
    if error is not None:
        raise error
    return result


def run_on_main(function: Callable[[], Result], context: DistributedContext) -> Result:
    """Call `function` on rank 0 only and return its result on every rank.

    An exception on rank 0 is raised on every rank, so all processes stop together.
    """
    if not context.enabled:
        return function()
    outcome: list[object] = [None]
    if context.is_main:
        try:
            outcome[0] = (function(), None)
        except Exception as error:  # noqa: BLE001  (re-raised below, on this rank and every other)
            outcome[0] = (None, _picklable(error))
            main_error = error
    dist.broadcast_object_list(outcome, src=0)
    result, error = outcome[0]
    if error is not None:
        raise main_error if context.is_main else error
    return result


def _picklable(error: Exception) -> Exception:
    """Return `error` if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001  (an exception class with a custom __init__ may not rebuild from its args)
        return RuntimeError(f"another rank failed with {type(error).__name__}: {error}")
    return error
