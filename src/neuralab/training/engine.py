"""The training loop and evaluation, for any model, loss and batch loader.

One training step is the canonical sequence: zero_grad, forward, loss, backward, step.
All means are weighted by samples, so a short last batch counts exactly as much as its
size. Under torch.distributed, sums are added across ranks before dividing, so every
rank reports what one process over the whole data would report.
"""

import contextlib
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from neuralab.training.mlp_step import build_mlp_step

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops before any weights are saved."""

    def __init__(self, epoch: int, batch: int, value: float) -> None:
        super().__init__(
            f"loss is {value} at epoch {epoch}, batch {batch}; training stopped and no checkpoint was written "
            "with these weights. Lower the learning rate (--lr), check the inputs for NaN, or check that the "
            "model's head fits the loss"
        )
        self.epoch = epoch
        self.batch = batch


@dataclass(frozen=True)
class EvalResult:
    """Sample-weighted mean loss and accuracy over one pass of a loader."""

    loss: float
    accuracy: float
    samples: int


@dataclass(frozen=True)
class EpochResult:
    """The measurements of one epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    seconds: float
    samples_per_second: float


class Reporter(Protocol):
    """Receives progress; the CLI draws it, tests can record it."""

    def start_epoch(self, epoch: int, steps: int) -> None: ...

    def batch_done(self, step: int, loss: float) -> None: ...

    def epoch_done(self, result: EpochResult) -> None: ...


def _sum_across_ranks(values: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return values


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _global_batch_sizes(loader: Iterable[tuple[Tensor, Tensor]]) -> list[int] | None:
    """Return each step's batch size summed over ranks, when the loader provides them for this world size."""
    sizes = getattr(loader, "global_batch_sizes", None)
    if _world_size() == 1 or sizes is None or getattr(loader, "world_size", 1) != _world_size():
        return None
    return sizes()


def _rank_loss_weight(local_samples: int, global_samples: int | None) -> float:
    """Return the weight of this rank's mean loss that makes DDP's gradient the mean over the global batch.

    DDP averages gradients over ranks, which counts every rank's mean equally. Weighting rank r's
    mean by n_r * world_size / N, with n_r its samples and N the global batch, gives the gradient
    of one process over all N samples. Ranks with equal shares get exactly 1. Without
    `global_samples`, the ranks add up their counts, which costs one collective per step.
    """
    world_size = _world_size()
    if world_size == 1:
        return 1.0
    if global_samples is None:
        global_samples = int(_sum_across_ranks(torch.tensor([local_samples], dtype=torch.int64)).item())
    return local_samples * world_size / global_samples


class Trainer:
    """Trains a model with a loss, optimizer and per-step scheduler (None keeps the learning rate)."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, device: torch.device,
                 ignore_index: int | None = None, binary_threshold: float = 0.0, channels_last: bool = False,
                 autocast_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
                 eval_model: nn.Module | None = None) -> None:
        self.model = model
        # Under DDP, `model` is the DistributedDataParallel wrapper and `eval_model` the module inside it,
        # because evaluation needs no gradient synchronization between ranks.
        self.eval_model = model if eval_model is None else eval_model
        # Forward passes run under autocast in this dtype (bf16 or fp16); None trains in fp32.
        self.autocast_dtype = autocast_dtype
        # Scales fp16 losses up before backward, so small gradients do not underflow to zero.
        self.scaler = scaler
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.ignore_index = ignore_index
        # Outputs of a sigmoid head are probabilities, so their class threshold is 0.5, not 0.
        self.binary_threshold = binary_threshold
        # Channels-last (NHWC) convolutions ran 1.4-1.8x faster on CPU for our CNNs (2 cores, torch 2.14).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # A plain MLP in fp32 on CPU trains without autograd's graph, to the same bits (training/mlp_step.py).
        # Set this to None to train it through autograd.
        self.mlp_step = build_mlp_step(model, loss_fn) if autocast_dtype is None and device.type == "cpu" else None

    def _to_device(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        images = images.to(self.device, non_blocking=True)
        if images.dim() == 4:
            images = images.contiguous(memory_format=self.memory_format)
        return images, targets.to(self.device, non_blocking=True)

    def _correct(self, outputs: Tensor, targets: Tensor) -> tuple[int, int]:
        """Return (correct predictions, counted targets), skipping ignored targets."""
        predictions = self.classes_of(outputs)
        if self.ignore_index is None:
            return int((predictions == targets).sum()), targets.numel()
        valid = targets != self.ignore_index
        return int(((predictions == targets) & valid).sum()), int(valid.sum())

    def train_epoch(self, loader: Iterable[tuple[Tensor, Tensor]], epoch: int,
                    reporter: Reporter | None = None) -> tuple[float, float, int, float]:
        """Run one epoch; return (mean loss, accuracy, samples seen by all ranks, seconds)."""
        self.model.train()
        loss_sum, samples, correct, counted = 0.0, 0, 0, 0  # Python floats sum in float64
        global_sizes = _global_batch_sizes(loader)
        started = time.perf_counter()
        for step, (images, targets) in enumerate(loader, start=1):
            images, targets = self._to_device(images, targets)

            global_samples = global_sizes[step - 1] if global_sizes is not None else None
            outputs, loss = self._train_step(images, targets, global_samples)
            if self.scheduler is not None:
                self.scheduler.step()

            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(epoch, step, loss_value)
            batch_correct, batch_counted = self._correct(outputs.detach(), targets)
            loss_sum += loss_value * len(images)
            samples += len(images)
            correct += batch_correct
            counted += batch_counted
            if reporter is not None:
                reporter.batch_done(step, loss_value)
        seconds = time.perf_counter() - started

        totals = torch.tensor([loss_sum, samples, correct, counted], dtype=torch.float64)
        loss_sum, samples, correct, counted = _sum_across_ranks(totals).tolist()
        return max(loss_sum / samples, 0.0), correct / max(counted, 1), int(samples), seconds

    @torch.no_grad()
    def evaluate(self, loader: Iterable[tuple[Tensor, Tensor]], confusion=None) -> EvalResult:
        """Return mean loss and accuracy over `loader` in eval mode; restore the previous mode after.

        `confusion`, if given, is updated with every batch's predicted and true classes.
        """
        was_training = self.eval_model.training
        self.eval_model.eval()
        totals = torch.zeros(4, dtype=torch.float64)
        try:
            for images, targets in loader:
                if len(images) == 0:  # this rank's share of a batch smaller than the number of ranks
                    continue
                images, targets = self._to_device(images, targets)
                with self._autocast():
                    outputs = self.eval_model(images)
                loss = self.loss_fn(outputs.float(), targets)
                correct, counted = self._correct(outputs, targets)
                totals += torch.tensor([loss.item() * len(images), len(images), correct, counted],
                                       dtype=torch.float64)
                if confusion is not None:
                    confusion.update(self.classes_of(outputs).cpu(), targets.cpu())
        finally:
            self.eval_model.train(was_training)
        loss_sum, samples, correct, counted = _sum_across_ranks(totals).tolist()
        # The registered losses are never negative; clamping hides only rounding below zero.
        return EvalResult(max(loss_sum / max(samples, 1), 0.0), correct / max(counted, 1), int(samples))

    def _train_step(self, images: Tensor, targets: Tensor, global_samples: int | None) -> tuple[Tensor, Tensor]:
        """Compute one batch's gradients, step the optimizer and return (outputs, loss).

        `global_samples` is the batch's size summed over ranks, when known.
        """
        # An empty batch (a rank's share under torchrun) needs _loss's zero loss, because the step would give NaN.
        if self.mlp_step is not None and len(targets) > 0 and self.mlp_step.usable():
            outputs, loss = self.mlp_step(images, targets)  # sets every gradient, so nothing to zero first
            self.optimizer.step()
            return outputs, loss
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = self.model(images)
        loss = self._loss(outputs, targets)
        weight = _rank_loss_weight(len(images), global_samples)
        self._backward_and_step(loss if weight == 1.0 else loss * weight)
        return outputs, loss

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()  # a disabled torch.autocast still costs microseconds per step
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Return the loss in fp32. A rank's empty share of a batch gives a zero loss that still reaches every weight."""
        if len(targets) == 0:
            return outputs.sum() * 0.0  # DDP waits for a gradient of every parameter on every rank
        return self.loss_fn(outputs.float(), targets)

    def _backward_and_step(self, loss: Tensor) -> None:
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # skips the step when a scaled gradient overflowed
        self.scaler.update()

    def classes_of(self, outputs: Tensor) -> Tensor:
        """Return class indices: the arg-max over dim 1, or the binary threshold for one output column."""
        if outputs.shape[1] > 1:
            return outputs.argmax(dim=1)
        return (outputs.squeeze(1) > self.binary_threshold).long()

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
