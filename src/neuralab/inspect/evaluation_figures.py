"""Figures of a trained model on its test set: confusion matrix, per-class scores, the highest-loss
images, and for segmentation the predicted masks over the images and the per-class IoU.
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from neuralab.inspect.figures import add_legend, figure_style, label_axes, new_figure

# Up to this many classes, every cell of the confusion matrix carries its count.
MAX_ANNOTATED_CLASSES = 20
HIGHEST_LOSS_COLUMNS = 6
MASK_ALPHA = 0.55  # opacity of a class colour drawn over the image


def confusion_figure(matrix: list[list[int]], classes: list[str]) -> Figure:
    """Draw the confusion matrix coloured by the share of each true class, with the counts written in."""
    counts = np.array(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(3.0 + 0.35 * len(classes), 14.0)
    with figure_style():
        figure, grid = new_figure(1, 1, (size + 1.5, size))
        axes = grid[0, 0]
        image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        axes.grid(False)
        ticks = np.arange(len(classes))
        axes.set_xticks(ticks, classes, rotation=90 if max(map(len, classes)) > 3 else 0)
        axes.set_yticks(ticks, classes)
        if len(classes) <= MAX_ANNOTATED_CLASSES:
            for true_class, predicted_class in np.ndindex(counts.shape):
                colour = "white" if shares[true_class, predicted_class] > 0.5 else "black"
                axes.text(predicted_class, true_class, str(counts[true_class, predicted_class]), ha="center",
                          va="center", fontsize=8, color=colour)
        label_axes(axes, f"Confusion matrix, {counts.sum()} test images", "predicted class", "true class")
        figure.colorbar(image, ax=axes, label="share of the true class")
    return figure


def per_class_figure(per_class: dict[str, list], classes: list[str]) -> Figure:
    """Draw per-class precision, recall and F1 as grouped bars; undefined values (None) are left out."""
    positions = np.arange(len(classes))
    width = 0.27
    with figure_style():
        figure, grid = new_figure(1, 1, (max(7.0, 0.7 * len(classes) + 3.0), 4.2))
        axes = grid[0, 0]
        for offset, key in zip((-width, 0.0, width), ("precision", "recall", "f1")):
            values = [np.nan if value is None else value for value in per_class[key]]
            axes.bar(positions + offset, values, width, label=key)
        axes.set_xticks(positions, classes, rotation=90 if max(map(len, classes)) > 3 else 0)
        axes.set_ylim(0.0, 1.15)  # room above 1 for the legend
        label_axes(axes, "Precision, recall and F1 per class", "class", "score (0 to 1)")
        add_legend(axes, loc="upper center", ncols=3)
    return figure


def _display_pixels(image: Tensor) -> np.ndarray:
    """Return one image (C, H, W) scaled to [0, 1] as (H, W) for one channel or (H, W, 3) for three."""
    pixels = image.float()
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()).clamp_min(1e-12)
    if pixels.shape[0] == 3:
        return pixels.permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
    return pixels[0].numpy()


def _show_image(axes, image: Tensor) -> None:
    axes.imshow(_display_pixels(image), cmap="gray", vmin=0.0, vmax=1.0)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.grid(False)


def highest_loss_figure(images: Tensor, targets: list[int], predictions: list[int], probabilities: list[float],
                        losses: list[float], classes: list[str]) -> Figure:
    """Draw test images in order of loss, each labelled with its true and predicted class and the probability.

    `probabilities` is the model's probability of its predicted class. All tiles share one axes,
    which draws much faster than one axes per image.
    """
    count = len(images)
    columns = min(HIGHEST_LOSS_COLUMNS, max(count, 1))
    rows = max(-(-count // columns), 1)  # ceiling division
    height, width = images.shape[-2:]
    cell_width, cell_height = 1.25 * width, 1.75 * height  # the space below each image is for its label
    figure_width = 2.0 * columns
    with figure_style():
        figure, grid = new_figure(1, 1, (figure_width, figure_width * rows * cell_height / (columns * cell_width) + 0.5))
        axes = grid[0, 0]
        for index in range(count):
            left, top = (index % columns) * cell_width, (index // columns) * cell_height
            axes.imshow(_display_pixels(images[index]), cmap="gray", vmin=0.0, vmax=1.0,
                        extent=(left, left + width, top + height, top))
            axes.text(left + width / 2, top + height * 1.05, f"true {classes[targets[index]]}\n"
                      f"pred {classes[predictions[index]]} p={probabilities[index]:.2f}\nloss {losses[index]:.2f}",
                      ha="center", va="top", fontsize=8)
        axes.set_xlim(-0.1 * width, columns * cell_width)
        axes.set_ylim(rows * cell_height, -0.1 * height)
        axes.set_axis_off()
        axes.set_title(f"The {count} test images with the highest loss (p: probability of the predicted class)")
    return figure

def class_colours(count: int) -> np.ndarray:
    """Return an RGBA colour per class; class 0 (background) is transparent."""
    palette = colormaps["tab10" if count <= 11 else "tab20"]
    colours = np.array([palette(index % palette.N) for index in range(max(count - 1, 1))])
    return np.vstack([[0.0, 0.0, 0.0, 0.0], colours])


def _overlay(axes, image: Tensor, mask: Tensor, colours: np.ndarray, ignore_index: int | None) -> None:
    _show_image(axes, image)
    classes = mask.long().clone()
    if ignore_index is not None:
        classes[classes == ignore_index] = 0
    layer = colours[classes.clamp(0, len(colours) - 1).numpy()]
    layer[..., 3] = np.where(layer[..., 3] > 0, MASK_ALPHA, 0.0)
    axes.imshow(layer, interpolation="nearest")


def segmentation_figure(images: Tensor, masks: Tensor, predictions: Tensor, classes: list[str],
                        ignore_index: int | None) -> Figure:
    """Draw test images beside their ground-truth and predicted masks, each mask drawn over its image."""
    colours = class_colours(len(classes))
    count = len(images)
    with figure_style():
        figure, grid = new_figure(count, 3, (9.0, 3.0 * count + 1.0))
        for row, image, mask, predicted in zip(grid, images, masks, predictions):
            _show_image(row[0], image)
            _overlay(row[1], image, mask, colours, ignore_index)
            _overlay(row[2], image, predicted, colours, ignore_index)
        for axes, title in zip(grid[0], ("test image", "ground truth", "prediction")):
            axes.set_title(title)
        handles = [Patch(color=colours[index][:3], label=name) for index, name in enumerate(classes) if index > 0]
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
        figure.suptitle("Segmentation of test images (background left uncoloured)")
    return figure


def iou_figure(iou: list[float | None], classes: list[str]) -> Figure:
    """Draw the IoU of each class as bars; a class absent from masks and predictions gets no bar."""
    positions = np.arange(len(classes))
    values = [np.nan if value is None else value for value in iou]
    with figure_style():
        figure, grid = new_figure(1, 1, (max(6.0, 0.6 * len(classes) + 2.5), 4.0))
        axes = grid[0, 0]
        axes.bar(positions, values, color="C0")
        axes.set_xticks(positions, classes, rotation=90 if max(map(len, classes)) > 3 else 0)
        axes.set_ylim(0.0, 1.0)
        label_axes(axes, "Intersection over union per class", "class", "IoU (0 to 1)")
    return figure
