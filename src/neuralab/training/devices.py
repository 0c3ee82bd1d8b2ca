"""Device choice and the CPU thread rule.

The thread count comes from a fixed rule on the model's work per step, never from the
machine's measured load, so a configuration trains identically every time it runs. Small
steps lose more to thread synchronization than they gain: measured on a 2-core machine,
the 784-128-64-10 MLP at batch 64 ran faster on one thread than on two.
"""

import os

import torch
from torch import nn

# Multiply-accumulates per step below which one thread is used (the MLP at batch 64 does
# about 7 million; a small CNN at batch 64 does several hundred million).
SINGLE_THREAD_MACS = 50_000_000


def resolve_device(name: str) -> torch.device:
    """Return the torch device for `name`: auto, cpu, cuda or mps."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; valid devices: auto, cpu, cuda, mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch finds no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but this machine has no Apple GPU; use --device cpu or auto")
    return torch.device(name)


def count_macs(model: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Return the multiply-accumulates of one forward pass of one sample through linear and conv layers."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            kernel = module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.weight[:, 0].numel()
            total += output[0].numel() * kernel

    handles = [module.register_forward_hook(count) for module in model.modules()]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *in_shape)))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total


def choose_threads(model: nn.Module, in_shape: tuple[int, ...], batch_size: int) -> int:
    """Return the CPU thread count for training `model` at `batch_size`."""
    cores = os.cpu_count() or 1
    macs_per_step = count_macs(model, in_shape) * batch_size
    return 1 if macs_per_step < SINGLE_THREAD_MACS else cores
