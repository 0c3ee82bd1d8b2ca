"""Concept figures: every registered activation with its autograd derivative, and the common losses.

`plot_activations` and `plot_losses` write a PNG and return the numbers behind it, so tests
and notebooks can check what the figure shows. `activation_figure` and `loss_figure` return
the unsaved figure as well.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from neuralab.inspect.figures import add_legend, figure_style, label_axes, new_figure, save_figure
from neuralab.nn.activations import ACTIVATIONS, SATURATING, build_activation

# Inputs of the activation figure: wide enough that sigmoid and tanh saturate at both ends.
X_RANGE = (-6.0, 6.0)
X_STEPS = 1201  # 0.01 apart, so x = 0 and x = -1 are grid points up to float32 rounding

# Below this slope a unit passes on less than 1% of the gradient that an identity unit would,
# so the figure shades that stretch of a saturating activation as "saturated".
SATURATION_GRADIENT = 0.01

ACTIVATION_COLUMNS = 4

# Extra room above the curves, as a fraction of the y range, so that legends cover no curve.
LEGEND_HEADROOM = 0.4

# The identity check draws random logits from this seed, so the returned difference is reproducible.
LOGITS_SEED = 0
LOGITS_SAMPLES = 256
LOGITS_CLASSES = 10
LOGITS_SCALE = 3.0  # standard deviation of the logits, so the per-sample losses range from near 0 to about 14 nats

# Classes of the cross-entropy curve. Any count >= 2 gives the same -log p for the true class.
CURVE_CLASSES = 3


def activation_and_derivative(name: str, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Apply activation `name` to `inputs` and differentiate it elementwise with autograd.

    Returns (f(inputs), f'(inputs)), both detached and shaped like `inputs`.
    """
    inputs = inputs.detach().clone().requires_grad_()
    outputs = build_activation(name)(inputs)

    # Every registered activation is elementwise, so d(sum f)/dx_i = f'(x_i).
    (derivative,) = torch.autograd.grad(outputs.sum(), inputs)
    return outputs.detach().clone(), derivative


def _shade(axes: Axes, x: np.ndarray, mask: np.ndarray, label: str) -> None:
    """Shade each contiguous stretch of `x` where `mask` is true.

    Only the first stretch gets `label`, so the legend lists it once.
    """
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        axes.axvspan(x[start], x[stop - 1], color="0.5", alpha=0.2, lw=0, label=label)
        label = "_nolegend_"


def _annotate_activation(axes: Axes, name: str, x: np.ndarray, derivative: np.ndarray) -> None:
    """Mark saturation (sigmoid, tanh), or the slope for x < 0: zero (ReLU's dead region) or small (leaky ReLU)."""
    negative = x < 0
    if name in SATURATING:
        _shade(axes, x, np.abs(derivative) < SATURATION_GRADIENT, f"saturated: |f'| < {SATURATION_GRADIENT:g}")
        axes.annotate(f"f'({x[-1]:g}) = {derivative[-1]:.1e}", xy=(x[-1], derivative[-1]), xytext=(0.96, 0.22),
                      textcoords="axes fraction", ha="right", arrowprops={"arrowstyle": "->"})
    elif np.all(derivative[negative] == 0):
        _shade(axes, x, negative, "dead: f' = 0, no gradient")
    elif np.allclose(derivative[negative], derivative[0]) and 0 < derivative[0] < 1:
        axes.annotate(f"f' = {derivative[0]:g} for x < 0:\nsmall but never 0", xy=(-3.0, derivative[0]),
                      xytext=(0.04, 0.55), textcoords="axes fraction", arrowprops={"arrowstyle": "->"})


def _plot_one_activation(axes: Axes, name: str, x: np.ndarray, outputs: np.ndarray, derivative: np.ndarray) -> None:
    axes.plot(x, outputs, color="C0", label="f(x)")
    axes.plot(x, derivative, color="C1", linestyle="--", label="f'(x)")
    _annotate_activation(axes, name, x, derivative)
    bottom, top = axes.get_ylim()
    axes.set_ylim(bottom, top + LEGEND_HEADROOM * (top - bottom))
    label_axes(axes, name, "x (pre-activation)", "f(x), f'(x)")
    add_legend(axes, loc="upper left")


def activation_figure() -> tuple[Figure, dict[str, Any]]:
    """Draw every registered activation with its autograd derivative, plus all derivatives overlaid.

    Returns the figure and {"x": inputs, "outputs": {name: f(x)}, "derivatives": {name: f'(x)}}.
    """
    x = torch.linspace(*X_RANGE, X_STEPS)
    names = ACTIVATIONS.names()
    curves = {name: activation_and_derivative(name, x) for name in names}
    rows = -(-(len(names) + 1) // ACTIVATION_COLUMNS)  # ceiling division, with one extra panel for the overlay

    with figure_style():
        figure, grid = new_figure(rows, ACTIVATION_COLUMNS, (3.5 * ACTIVATION_COLUMNS, 3.3 * rows))
        panels = list(grid.flat)
        for axes, name in zip(panels, names):
            outputs, derivative = curves[name]
            _plot_one_activation(axes, name, x.numpy(), outputs.numpy(), derivative.numpy())

        overlay = panels[len(names)]
        for name in names:
            overlay.plot(x.numpy(), curves[name][1].numpy(), label=name)
        bottom, top = overlay.get_ylim()
        overlay.set_ylim(bottom, top + 2 * LEGEND_HEADROOM * (top - bottom))  # the legend has four rows
        label_axes(overlay, "f'(x) of every activation", "x (pre-activation)", "f'(x)")
        add_legend(overlay, loc="upper left", ncols=2)
        for unused in panels[len(names) + 1:]:
            figure.delaxes(unused)
        figure.suptitle("Activations f(x) and their derivatives f'(x), computed by autograd")

    outputs = {name: curves[name][0] for name in names}
    derivatives = {name: curves[name][1] for name in names}
    return figure, {"x": x, "outputs": outputs, "derivatives": derivatives}


def plot_activations(path: Path) -> dict[str, Any]:
    """Write the activation figure to the PNG file `path` and return its numbers, with "path" added."""
    figure, result = activation_figure()
    result["path"] = save_figure(figure, path)
    return result


def cross_entropy_identity(num_samples: int = LOGITS_SAMPLES, num_classes: int = LOGITS_CLASSES,
                           seed: int = LOGITS_SEED) -> dict[str, Any]:
    """Compare per-sample cross_entropy(logits) with nll_loss(log_softmax(logits)) on random logits.

    Returns both loss vectors and their maximum absolute difference as a float.
    """
    generator = torch.Generator().manual_seed(seed)
    logits = LOGITS_SCALE * torch.randn(num_samples, num_classes, generator=generator)
    targets = torch.randint(num_classes, (num_samples,), generator=generator)

    cross_entropy = F.cross_entropy(logits, targets, reduction="none")
    log_probs = F.log_softmax(logits, dim=1)
    nll_of_log_softmax = F.nll_loss(log_probs, targets, reduction="none")

    difference = (cross_entropy - nll_of_log_softmax).abs().max().item()
    return {"cross_entropy": cross_entropy, "nll_of_log_softmax": nll_of_log_softmax,
            "max_abs_difference": difference}


def _plot_regression_losses(axes: Axes) -> None:
    target = 1.0
    predictions = torch.linspace(target - 3.0, target + 3.0, 601)
    targets = torch.full_like(predictions, target)
    mse = F.mse_loss(predictions, targets, reduction="none")
    mae = F.l1_loss(predictions, targets, reduction="none")
    axes.plot(predictions, mse, label="MSE (ŷ - y)², gradient 2(ŷ - y)")
    axes.plot(predictions, mae, label="MAE |ŷ - y|, gradient ±1")
    axes.set_ylim(0.0, 10.0)  # headroom above the largest MSE (9) for the legend
    label_axes(axes, f"Regression losses, target y = {target:g}", "prediction ŷ", "loss per sample")
    add_legend(axes, loc="upper center")


def _plot_classification_losses(axes: Axes) -> float:
    """Plot BCE and cross-entropy against the true class's probability and return the maximum gap between them."""
    probabilities = torch.linspace(1e-3, 1.0 - 1e-3, 999)
    bce = F.binary_cross_entropy(probabilities, torch.ones_like(probabilities), reduction="none")

    # Logits whose softmax gives the true class (index 0) probability p and splits the rest evenly.
    others = ((1.0 - probabilities) / (CURVE_CLASSES - 1)).unsqueeze(1).expand(-1, CURVE_CLASSES - 1)
    logits = torch.cat([probabilities.unsqueeze(1), others], dim=1).log()  # (N, 1), (N, C-1) -> (N, C)
    cross_entropy = F.cross_entropy(logits, torch.zeros(len(probabilities), dtype=torch.long), reduction="none")

    axes.plot(probabilities, bce, linewidth=4, alpha=0.5, label="BCE, target 1")
    axes.plot(probabilities, cross_entropy, color="C3", linestyle="--", label=f"cross-entropy, {CURVE_CLASSES} classes")
    axes.annotate("both are -log p: a confident\nwrong answer costs the most", xy=(0.03, -np.log(0.03)),
                  xytext=(0.25, 0.7), textcoords="axes fraction", arrowprops={"arrowstyle": "->"})
    label_axes(axes, "Classification losses, true class", "predicted probability p of the true class",
               "loss per sample (nats)")
    add_legend(axes, loc="upper right")
    return (bce - cross_entropy).abs().max().item()


def _plot_identity_check(axes: Axes, identity: dict[str, Any]) -> None:
    cross_entropy = identity["cross_entropy"].numpy()
    axes.scatter(cross_entropy, identity["nll_of_log_softmax"].numpy(), s=10, alpha=0.6,
                 label=f"{len(cross_entropy)} random samples")
    limits = (0.0, float(cross_entropy.max()) * 1.05)
    axes.plot(limits, limits, color="0.3", linestyle=":", label="y = x")
    axes.text(0.04, 0.96, f"max |difference| = {identity['max_abs_difference']:.1e}",
              transform=axes.transAxes, va="top", bbox={"facecolor": "white", "edgecolor": "0.6"})
    label_axes(axes, "log_softmax + NLL equals cross_entropy", "cross_entropy(logits) (nats)",
               "nll_loss(log_softmax(logits)) (nats)")
    add_legend(axes, loc="lower right")


def loss_figure() -> tuple[Figure, dict[str, Any]]:
    """Draw MSE and MAE, BCE and cross-entropy for a fixed target, and the log_softmax + NLL identity.

    Returns the figure and {"max_abs_difference": cross_entropy vs nll_loss(log_softmax),
    "bce_cross_entropy_max_difference": gap between the two classification curves,
    "num_samples", "num_classes"}.
    """
    identity = cross_entropy_identity()
    with figure_style():
        figure, grid = new_figure(1, 3, (14.0, 4.6))
        _plot_regression_losses(grid[0, 0])
        curve_gap = _plot_classification_losses(grid[0, 1])
        _plot_identity_check(grid[0, 2], identity)
        figure.suptitle("Losses as functions of the prediction")

    return figure, {
        "max_abs_difference": identity["max_abs_difference"],
        "bce_cross_entropy_max_difference": curve_gap,
        "num_samples": LOGITS_SAMPLES,
        "num_classes": LOGITS_CLASSES,
    }


def plot_losses(path: Path) -> dict[str, Any]:
    """Write the loss figure to the PNG file `path` and return its numbers, with "path" added."""
    figure, result = loss_figure()
    result["path"] = save_figure(figure, path)
    return result
