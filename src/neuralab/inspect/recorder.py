"""Layer statistics recorded during training: gradient norms, activation statistics and start weights.

`StatsRecorder` is a training reporter. On every `every`-th training step it records each
layer's gradient norm and, through forward hooks attached for that step only, the mean,
standard deviation, dead fraction (ReLU) and saturated fraction (sigmoid, tanh) of every
activation module's output. The rows go to the run's stats.json after every epoch.
"""

import json
import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from neuralab.nn.activations import ACTIVATIONS, SATURATING
from neuralab.training.checkpoint import save_weights, write_text
from neuralab.training.engine import EpochResult
from neuralab.training.runs import RunDir

STATS_FORMAT = "neuralab-stats"

# A sigmoid or tanh output counts as saturated when it lies within this fraction of the output
# range from either limit: sigmoid below 0.05 or above 0.95, tanh beyond -0.9 or 0.9. Its local
# derivative is then below 19% of its maximum (0.0475 of 0.25 for sigmoid, 0.19 of 1 for tanh).
SATURATION_MARGIN = 0.05

# Keys of one activation summary, in the order `activation_summary` returns them.
ACTIVATION_KEYS = ("mean", "std", "dead_fraction", "saturated_fraction")


def unwrap(model: nn.Module) -> nn.Module:
    """Return the model inside a DistributedDataParallel wrapper, or `model` itself."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.module
    return model


def parameter_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Return the modules that own parameters directly (Linear, Conv2d, BatchNorm2d ...), in model order."""
    return {name: module for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))}


def activation_kind(module: nn.Module) -> str | None:
    """Return the registered activation name of `module` (e.g. "relu"), or None for other modules."""
    for entry in ACTIVATIONS.entries():
        if entry.name != "identity" and type(module) is entry.factory:
            return entry.name
    return None


def activation_modules(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Return {module name: (module, activation name)} for every activation module of `model`."""
    found = {}
    for name, module in model.named_modules():
        kind = activation_kind(module)
        if kind is not None:
            found[name] = (module, kind)
    return found


def activation_summary(outputs: Tensor, kind: str) -> Tensor:
    """Return [mean, std, dead fraction, saturated fraction] of one activation module's output.

    A unit is one feature (dim 1): a neuron of a Linear layer, or a channel of a convolution,
    which never fires when it is 0 for every sample and position of the batch. The dead
    fraction is NaN except for ReLU, and the saturated fraction is NaN except for sigmoid and tanh.
    """
    values = outputs.detach().float()
    nan = torch.tensor(math.nan)
    dead, saturated = nan, nan
    if kind == "relu":
        per_unit = values.transpose(0, 1).reshape(values.shape[1], -1)  # (B, C, ...) -> (C, B*...)
        dead = (per_unit.amax(dim=1) <= 0).float().mean()
    if kind in SATURATING:
        low, high = SATURATING[kind]
        margin = SATURATION_MARGIN * (high - low)
        saturated = ((values < low + margin) | (values > high - margin)).float().mean()
    return torch.stack([values.mean(), values.std(), dead.to(values.device), saturated.to(values.device)])


def layer_gradient_norms(layers: dict[str, nn.Module]) -> dict[str, float | None]:
    """Return the L2 norm of each layer's parameter gradients together, or None when no gradient exists."""
    norms: dict[str, float | None] = {}
    for name, module in layers.items():
        gradients = [parameter.grad for parameter in module.parameters(recurse=False) if parameter.grad is not None]
        norms[name] = float(torch.nn.utils.get_total_norm(gradients)) if gradients else None
    return norms


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class StatsRecorder:
    """Record layer statistics every `every` training steps and write them to the run directory.

    The first step of training is always sampled, so even a one-step run has a row. On a
    resumed run (`start_epoch` > 0) the rows of epochs after the checkpoint are dropped and
    the start weights are kept from the original start.
    """

    def __init__(self, model: nn.Module, run: RunDir, every: int, optimizer: torch.optim.Optimizer | None = None,
                 start_epoch: int = 0) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"stats_every must be a positive number of steps, got {every!r}")
        self.model = unwrap(model)
        self.run = run
        self.every = every
        self.optimizer = optimizer
        self.layers = parameter_layers(self.model)
        self.activations = activation_modules(self.model)
        self.writes_files = _is_main_process()
        self.rows: list[dict[str, Any]] = []
        if start_epoch > 0:
            previous = read_stats(run) or {}
            self.rows = [row for row in previous.get("rows", []) if row["epoch"] <= start_epoch]
        elif self.writes_files:
            save_weights(run.start_weights_path, self.model, {"format": "neuralab-start-weights"})
        self._epoch = start_epoch
        self._steps_per_epoch = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._pending: dict[str, Tensor] = {}
        self._lr: float | None = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        self._epoch = epoch
        self._steps_per_epoch = steps
        if self._is_sampled(1):
            self._attach_hooks()

    def batch_done(self, step: int, loss: float) -> None:
        if self._is_sampled(step):
            self.rows.append(self._row(step, loss))
        self._detach_hooks()
        # Hooks stay off after the epoch's last step, so evaluation passes are never recorded.
        if step < self._steps_per_epoch and self._is_sampled(step + 1):
            self._attach_hooks()

    def epoch_done(self, result: EpochResult) -> None:
        self._detach_hooks()
        self.save()

    def close(self) -> None:
        """Remove any hooks still attached, for example after an interrupted epoch."""
        self._detach_hooks()

    def save(self) -> None:
        """Write stats.json atomically (on the main process only)."""
        if not self.writes_files:
            return
        content = {
            "format": STATS_FORMAT,
            "every": self.every,
            "steps_per_epoch": self._steps_per_epoch,
            "layers": {name: type(module).__name__ for name, module in self.layers.items()},
            "activations": {name: kind for name, (_, kind) in self.activations.items()},
            "rows": self.rows,
        }
        write_text(self.run.stats_path, json.dumps(content) + "\n")

    def _global_step(self, step: int) -> int:
        return (self._epoch - 1) * self._steps_per_epoch + step

    def _is_sampled(self, step: int) -> bool:
        return (self._global_step(step) - 1) % self.every == 0

    def _attach_hooks(self) -> None:
        # Read before the step runs, because the scheduler updates the rate at the end of the step.
        self._lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else None
        for name, (module, kind) in self.activations.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name, kind)))

    def _detach_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _make_hook(self, name: str, kind: str):
        def hook(module: nn.Module, inputs: Any, outputs: Tensor) -> None:
            if module.training:
                self._pending[name] = activation_summary(outputs, kind)

        return hook

    def _row(self, step: int, loss: float) -> dict[str, Any]:
        activations = {}
        for name, summary in self._pending.items():
            values = summary.tolist()
            activations[name] = {key: _none_if_nan(value) for key, value in zip(ACTIVATION_KEYS, values)}
        self._pending = {}
        return {"epoch": self._epoch, "step": self._global_step(step), "loss": loss, "lr": self._lr,
                "grad_norm": layer_gradient_norms(self.layers), "activations": activations}


def read_stats(run: RunDir) -> dict[str, Any] | None:
    """Return the run's recorded statistics, or None when the run has no stats.json."""
    if not run.stats_path.is_file():
        return None
    try:
        content = json.loads(run.stats_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{run.stats_path}: invalid JSON ({error}); delete it to write the report without layer statistics") from None
    if not isinstance(content, dict) or content.get("format") != STATS_FORMAT:
        raise ValueError(f"{run.stats_path}: not a neuralab statistics file (no 'format: {STATS_FORMAT}' entry)")
    return content
