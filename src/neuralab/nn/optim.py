"""Optimizers and learning-rate schedulers by name.

SGD, Adam and AdamW use PyTorch's fused implementation where it exists (CPU and CUDA):
one kernel for all parameters, measured 2.6x faster than the default for-loop Adam on
the 784-128-64-10 MLP on a 2-core CPU.

Every scheduler here is stepped once per training batch, so schedules are defined in
steps: the engine passes the number of steps per epoch and the total number of epochs. The
constant schedule, "none", is no scheduler at all, because stepping one that changes nothing
took about 2% of an mnist-mlp epoch.
"""

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import lr_scheduler

from neuralab.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


@OPTIMIZERS.register("sgd", "stochastic gradient descent, with optional (Nesterov) momentum")
def _sgd(params: Iterable[nn.Parameter], lr: float, momentum: float, nesterov: bool, weight_decay: float,
         fused: bool):
    if nesterov and momentum <= 0:
        raise ValueError(f"nesterov=True needs momentum > 0, got momentum={momentum}; set --momentum 0.9")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           fused=fused or None)


@OPTIMIZERS.register("adam", "Adam: per-parameter step sizes from running gradient moments")
def _adam(params: Iterable[nn.Parameter], lr: float, momentum: float, nesterov: bool, weight_decay: float,
          fused: bool):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


@OPTIMIZERS.register("adamw", "AdamW: Adam with weight decay decoupled from the gradient")
def _adamw(params: Iterable[nn.Parameter], lr: float, momentum: float, nesterov: bool, weight_decay: float,
           fused: bool):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


@OPTIMIZERS.register("rmsprop", "RMSprop: steps scaled by a running mean of squared gradients")
def _rmsprop(params: Iterable[nn.Parameter], lr: float, momentum: float, nesterov: bool, weight_decay: float,
             fused: bool):
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)  # no fused version


@SCHEDULERS.register("none", "constant learning rate")
def _constant(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int, **options: float):
    return None  # nothing to step: the optimizer keeps its learning rate


@SCHEDULERS.register("step", "multiply the learning rate by gamma every step_epochs epochs")
def _step(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int, *,
          step_epochs: float = 1.0, gamma: float = 0.7, **options: float):
    if not step_epochs > 0:
        raise ValueError(f"step_epochs must be positive, got {step_epochs}; set --step-epochs, e.g. --step-epochs 1")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}; set --gamma, e.g. --gamma 0.7")
    step_size = max(1, round(step_epochs * steps_per_epoch))
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("cosine", "cosine decay from lr to 0 over the run")
def _cosine(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int, **options: float):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * epochs)


@SCHEDULERS.register("one_cycle", "warm up to lr, then anneal to near 0 (Smith's 1cycle policy)")
def _one_cycle(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int, *,
               warmup_fraction: float = 0.25, **options: float):
    if not 0 < warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in (0, 1), got {warmup_fraction}; "
                         "set --warmup-fraction, e.g. --warmup-fraction 0.25")
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    total_steps = steps_per_epoch * epochs
    if total_steps < 3:
        raise ValueError(f"the one_cycle schedule needs at least 3 training steps, got {total_steps}; "
                         "train on more data or for more epochs, or use --scheduler none")
    # OneCycleLR divides by the warmup's steps - 1 and by the annealing's steps, so the warmup
    # spans at least two steps and leaves at least one for annealing.
    warmup_fraction = min(max(warmup_fraction, 2 / total_steps), 1 - 1 / total_steps)
    # cycle_momentum would overwrite Adam's betas and SGD's momentum, so leave them alone.
    return lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lrs,
        total_steps=total_steps,
        pct_start=warmup_fraction,
        cycle_momentum=False,
    )


def build_optimizer(name: str, params: Iterable[nn.Parameter], *, lr: float, momentum: float = 0.0,
                    nesterov: bool = False, weight_decay: float = 0.0, fused: bool = False) -> torch.optim.Optimizer:
    """Return optimizer `name` over `params`; options an optimizer lacks are ignored.

    `fused` selects the single-kernel implementation, for float parameters on CPU or CUDA.
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive number, got lr={lr}; set --lr, e.g. --lr 0.001")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}; set --momentum, e.g. --momentum 0.9")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight decay must be zero or positive, got {weight_decay}; "
                         "set --weight-decay, e.g. --weight-decay 0.0001")
    return OPTIMIZERS.build(name, params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           fused=fused)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                    **options: float) -> lr_scheduler.LRScheduler | None:
    """Return scheduler `name`, defined over `epochs` epochs of `steps_per_epoch` steps, or None for "none"."""
    return SCHEDULERS.build(name, optimizer, steps_per_epoch, epochs, **options)
