"""The layer summary of a model: output shape for one input, parameter count, memory and trainable flag."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LayerRow:
    """One leaf module of a model, as the summary table shows it."""

    name: str
    kind: str  # the module's class name, e.g. "Linear"
    output_shape: tuple[int, ...] | None  # None when the module did not run for the sample input
    calls: int  # how often the module ran in one forward pass (a shared pooling layer runs several times)
    parameters: int
    trainable: str  # "yes", "no", "partly", or "-" for a module without parameters
    memory_bytes: int  # parameters and buffers (such as batch-norm running statistics)


def _trainable(parameters: list[nn.Parameter]) -> str:
    if not parameters:
        return "-"
    flags = {parameter.requires_grad for parameter in parameters}
    if flags == {True}:
        return "yes"
    return "no" if flags == {False} else "partly"


def _memory(module: nn.Module) -> int:
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


@torch.no_grad()
def layer_table(model: nn.Module, sample: Tensor | None = None) -> list[LayerRow]:
    """Return one row per leaf module of `model`, with output shapes from one forward pass of `sample`.

    `sample` is a batch (usually of one image); the model runs in eval mode and its mode is
    restored after. Without a sample every output shape is None.
    """
    leaves = {name: module for name, module in model.named_modules() if not any(True for _ in module.children())}
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, outputs: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(outputs, Tensor) and name not in shapes:
                shapes[name] = tuple(outputs.shape)

        return hook

    if sample is not None:
        handles = [module.register_forward_hook(make_hook(name)) for name, module in leaves.items()]
        was_training = model.training
        try:
            model.eval()
            model(sample)
        finally:
            model.train(was_training)
            for handle in handles:
                handle.remove()

    rows = []
    for name, module in leaves.items():
        parameters = list(module.parameters(recurse=False))
        rows.append(LayerRow(name or type(module).__name__, type(module).__name__, shapes.get(name),
                             calls.get(name, 0), sum(parameter.numel() for parameter in parameters),
                             _trainable(parameters), _memory(module)))
    return rows


def totals(model: nn.Module) -> dict[str, int]:
    """Return the model's parameter count, trainable parameter count and memory in bytes (parameters and buffers)."""
    parameters = list(model.parameters())
    memory = sum(tensor.numel() * tensor.element_size() for tensor in [*parameters, *model.buffers()])
    return {"parameters": sum(parameter.numel() for parameter in parameters),
            "trainable": sum(parameter.numel() for parameter in parameters if parameter.requires_grad),
            "memory_bytes": memory}


def format_bytes(count: int) -> str:
    """Return a byte count in B, KiB or MiB, e.g. "427.0 KiB"."""
    if count < 1024:
        return f"{count} B"
    if count < 1024**2:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024**2:.2f} MiB"


def format_shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "(" + ", ".join(str(size) for size in shape) + ")"
