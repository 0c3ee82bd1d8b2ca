"""Figures of how a run trained: curves with the learning rate, gradient norms, activation statistics and weights.

Each function takes the plain values a run directory stores (metrics rows, stats.json, state
dicts) and returns a matplotlib Figure, which `save_figure` checks and writes.
"""

import math
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from neuralab.inspect.figures import add_legend, figure_style, label_axes, new_figure, tile_images
from neuralab.inspect.weights import scale_symmetric

# Losses whose values are negative log-likelihoods in natural-log units, so their axis reads "(nats)".
NATS_LOSSES = ("cross_entropy", "nll", "bce", "bce_with_logits", "cross_entropy_dice")

# At most this many weight layers get a histogram row; larger models show an evenly spaced selection.
MAX_HISTOGRAM_LAYERS = 12
HISTOGRAM_BINS = 60

# At most this many first-layer neurons or filters are drawn, in a grid of FIRST_LAYER_COLUMNS columns.
MAX_FIRST_LAYER_IMAGES = 64
FIRST_LAYER_COLUMNS = 8

# Series with fewer sampled steps than this get a marker on every point.
MARKED_ROWS = 30

# Activation statistics drawn, with their axis label. The fractions are NaN-free only for some activations.
ACTIVATION_PANELS = {
    "mean": "mean output",
    "std": "output standard deviation",
    "dead_fraction": "fraction of units that never fire",
    "saturated_fraction": "fraction of outputs saturated",
}


def loss_label(loss: str) -> str:
    """Return the axis label of a loss value, with its unit when it has one."""
    return f"{loss} loss (nats)" if loss in NATS_LOSSES else f"{loss} loss"


def _step_epochs(stats: dict[str, Any]) -> np.ndarray:
    """Return each recorded row's position in epochs: the step as a fraction of an epoch."""
    steps_per_epoch = max(stats.get("steps_per_epoch") or 1, 1)
    return np.array([row["step"] / steps_per_epoch for row in stats["rows"]])


def curves_figure(history: list[dict[str, Any]], stats: dict[str, Any] | None, loss: str) -> Figure:
    """Draw training and validation loss and accuracy per epoch, and the learning rate over training."""
    epochs = [row["epoch"] for row in history]
    with figure_style():
        figure, grid = new_figure(1, 3, (15.0, 4.4))
        loss_axes, accuracy_axes, lr_axes = grid[0]
        if stats and stats["rows"]:
            loss_axes.plot(_step_epochs(stats), [row["loss"] for row in stats["rows"]], color="0.6", linewidth=1,
                           label="training, sampled steps")
        loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", color="C0", label="training, epoch mean")
        _plot_validation(loss_axes, history, "val_loss", 1.0)
        label_axes(loss_axes, "Loss", "epoch", loss_label(loss))
        add_legend(loss_axes)

        accuracy_axes.plot(epochs, [100 * row["train_accuracy"] for row in history], "o-", color="C0",
                           label="training")
        _plot_validation(accuracy_axes, history, "val_accuracy", 100.0)
        label_axes(accuracy_axes, "Accuracy", "epoch", "accuracy (%)")
        add_legend(accuracy_axes)

        if stats and stats["rows"] and stats["rows"][0].get("lr") is not None:
            lr_axes.plot(_step_epochs(stats), [row["lr"] for row in stats["rows"]], color="C2",
                         label="sampled steps")
        else:
            lr_axes.plot(epochs, [row["lr"] for row in history], "o-", color="C2", label="end of epoch")
        label_axes(lr_axes, "Learning rate", "epoch", "learning rate")
        figure.suptitle("Training curves")
    return figure


def _plot_validation(axes, history: list[dict[str, Any]], key: str, scale: float) -> None:
    points = [(row["epoch"], scale * row[key]) for row in history if row.get(key) is not None]
    if points:
        axes.plot(*zip(*points), "s--", color="C1", label="validation")


def gradient_norm_figure(stats: dict[str, Any]) -> Figure:
    """Draw each layer's gradient norm at the sampled steps, on a log scale."""
    rows = stats["rows"]
    layers = list(stats["layers"])
    with figure_style():
        figure, grid = new_figure(1, 1, (10.0, 4.8))
        axes = grid[0, 0]
        steps = [row["step"] for row in rows]
        for index, name in enumerate(layers):
            values = [row["grad_norm"].get(name) for row in rows]
            values = [math.nan if value is None or value <= 0 else value for value in values]
            axes.plot(steps, values, marker=_marker(rows), color=_layer_colour(index, len(layers)),
                      label=f"{name} ({stats['layers'][name]})")
        axes.set_yscale("log")
        label_axes(axes, f"Gradient norm per layer, every {stats['every']} steps", "training step",
                   "L2 norm of the layer's gradients")
        _side_legend(axes, len(layers))
    return figure


def _marker(rows: list) -> str | None:
    """Return a point marker for short series, which a line alone would leave invisible (a single point)."""
    return "." if len(rows) < MARKED_ROWS else None


def _layer_colour(index: int, count: int) -> tuple[float, ...]:
    """Return a colour running from dark (first layer) to light (last layer)."""
    return colormaps["viridis"](0.9 * index / max(count - 1, 1))


def _side_legend(axes, entries: int) -> None:
    if entries > 1:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=1 if entries <= 16 else 2, fontsize=8)


def activation_figure(stats: dict[str, Any]) -> Figure | None:
    """Draw mean, std, dead fraction (ReLU) and saturated fraction (sigmoid, tanh) of each activation layer.

    Returns None when the run recorded no activation statistics (a model without activation modules).
    """
    rows = stats["rows"]
    names = list(stats["activations"])
    if not names or not rows:
        return None
    panels = [key for key in ACTIVATION_PANELS if any(
        row["activations"].get(name, {}).get(key) is not None for row in rows for name in names)]
    steps = [row["step"] for row in rows]
    with figure_style():
        figure, grid = new_figure(1, len(panels), (4.2 * len(panels) + 2.5, 4.4))
        for axes, key in zip(grid[0], panels):
            for index, name in enumerate(names):
                values = [row["activations"].get(name, {}).get(key) for row in rows]
                if all(value is None for value in values):
                    continue
                values = [math.nan if value is None else value for value in values]
                label = f"{name} ({stats['activations'][name]})"
                axes.plot(steps, values, marker=_marker(rows), color=_layer_colour(index, len(names)), label=label)
            label_axes(axes, ACTIVATION_PANELS[key], "training step", ACTIVATION_PANELS[key])
        _side_legend(grid[0, -1], len(names))
        figure.suptitle(f"Activation statistics per layer, one training batch every {stats['every']} steps")
    return figure


def _histogram_layers(names: list[str]) -> list[str]:
    if len(names) <= MAX_HISTOGRAM_LAYERS:
        return names
    picks = np.linspace(0, len(names) - 1, MAX_HISTOGRAM_LAYERS).round().astype(int)
    return [names[index] for index in sorted(set(picks.tolist()))]


def weight_histogram_figure(end: dict[str, Tensor], start: dict[str, Tensor] | None, layers: list[str]) -> Figure:
    """Draw the weight and bias histograms of each layer, at the end and (when given) at the start of training."""
    drawn_layers = _histogram_layers(layers)
    with figure_style():
        figure, grid = new_figure(len(drawn_layers), 2, (11.0, 2.3 * len(drawn_layers) + 0.8))
        for row, layer in zip(grid, drawn_layers):
            for axes, kind in zip(row, ("weight", "bias")):
                key = f"{layer}.{kind}"
                if key not in end:
                    axes.set_axis_off()
                    axes.text(0.5, 0.5, f"{layer} has no {kind}", ha="center", va="center", transform=axes.transAxes)
                    continue
                _histogram(axes, end[key], start.get(key) if start else None)
                label_axes(axes, f"{key} {tuple(end[key].shape)}", f"{kind} value", "count")
                add_legend(axes, loc="upper right")
        title = "Weight and bias histograms, start and end of training" if start else \
            "Weight and bias histograms at the end of training (start weights not recorded)"
        if len(drawn_layers) < len(layers):
            title += f"; {len(drawn_layers)} of {len(layers)} layers"
        figure.suptitle(title)
    return figure


def _histogram(axes, end: Tensor, start: Tensor | None) -> None:
    values = [end.flatten().float().numpy()]
    if start is not None:
        values.append(start.flatten().float().numpy())
    low = min(float(value.min()) for value in values)
    high = max(float(value.max()) for value in values)
    bins = np.linspace(low, high if high > low else low + 1e-6, HISTOGRAM_BINS + 1)
    if start is not None:
        axes.hist(values[1], bins=bins, histtype="step", color="C0", linewidth=1.5, label="start")
    axes.hist(values[0], bins=bins, histtype="stepfilled", color="C1", alpha=0.5, label="end")


def first_layer_figure(images: Tensor, layer: str, unit: str) -> Figure:
    """Draw the first layer's weights as images: blue negative, white zero, red positive, each on its own scale."""
    count = min(len(images), MAX_FIRST_LAYER_IMAGES)
    columns = min(FIRST_LAYER_COLUMNS, count)
    rows = -(-count // columns)  # ceiling division
    height, width = images.shape[1:3]
    gap = max(1, height // 10)
    grid_image = tile_images(scale_symmetric(images[:count]).numpy(), columns, gap, fill=0.5)
    with figure_style():
        figure, grid = new_figure(1, 1, (1.25 * columns + 1.2, 1.25 * rows + 1.4))
        axes = grid[0, 0]
        if grid_image.ndim == 2:
            axes.imshow(grid_image, cmap="bwr", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            axes.imshow(np.clip(grid_image, 0.0, 1.0), interpolation="nearest")
        axes.grid(False)
        axes.set_xticks([column * (width + gap) + width / 2 for column in range(columns)], range(columns))
        axes.set_yticks([row * (height + gap) + height / 2 for row in range(rows)],
                        [str(row * columns) for row in range(rows)])
        selection = f"first {count} of {len(images)}" if count < len(images) else f"all {count}"
        label_axes(axes, f"First layer {layer}: {selection}, one image per {unit}\n(blue negative, white 0, red "
                   "positive; each image scaled to its largest |weight|)", "column", "index of the row's first image")
    return figure
