"""Shared style for neuralab's figures: readable fonts, labelled axes, and atomic PNG files.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
drawing needs no display, keeps no global figure list and leaves the user's backend alone.
"""

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from neuralab.training.checkpoint import atomic_write

# Smallest font size, in points, of any text in a saved figure. `save_figure` keeps the figure's
# size in inches, so a point in the file is a point on a page that prints the figure at 100%.
MIN_FONT_PT = 8.0

# Sizes chosen so that the smallest text (tick labels, legends) stays above MIN_FONT_PT.
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.grid": True,
    "grid.alpha": 0.3,
}

# 150 dots per inch keeps 8 pt text legible on screen. The 14 x 6.6 inch activation figure is then about 215 KB.
DPI = 150

SHARED_FILE_MODE = 0o644  # owner read/write, everyone else read


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply STYLE to every figure, axes and text created inside the `with` block."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """Create a figure of `size` inches (width, height) with an (nrows, ncols) array of axes."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def label_axes(axes: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Set the title and axis labels. A label with a unit ends in it in parentheses, as in "loss (nats)"."""
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)


def add_legend(axes: Axes, **options) -> None:
    """Add a legend when the axes has more than one labelled line or patch."""
    handles, _ = axes.get_legend_handles_labels()
    if len(handles) > 1:
        axes.legend(**options)


def small_texts(figure: Figure, min_size: float = MIN_FONT_PT, draw: bool = True) -> list[Text]:
    """Return the visible, non-empty texts of `figure` whose font is smaller than `min_size` points.

    Tick labels exist only after a draw, so the figure is drawn (without writing pixels) first,
    unless `draw` is False because the caller has just drawn it.
    """
    if draw:
        figure.draw_without_rendering()
    texts = figure.findobj(Text)
    return [text for text in texts if text.get_visible() and text.get_text() and text.get_fontsize() < min_size]


def save_figure(figure: Figure, path: Path) -> Path:
    """Write `figure` to the PNG file `path` atomically, creating missing folders, and return `path`.

    Raises ValueError when `path` does not end in `.png` or when any text is below MIN_FONT_PT.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"invalid figure path {str(path)!r}: expected a file name ending in .png, "
                         f"got suffix {path.suffix!r}")
    # Encoding the PNG draws the figure, which creates the tick labels, so the check needs no second draw.
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI)
    too_small = small_texts(figure, draw=False)
    if too_small:
        sizes = ", ".join(f"{text.get_text()!r} at {text.get_fontsize():g} pt" for text in too_small[:5])
        raise ValueError(f"{len(too_small)} texts are smaller than the {MIN_FONT_PT:g} pt minimum: {sizes}. "
                         "Raise their fontsize.")

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: _write_png(png.getvalue(), temporary))
    return path


def _write_png(data: bytes, temporary: Path) -> None:
    temporary.write_bytes(data)
    # atomic_write's temporary file is private (mode 0600); a figure is meant to be shared.
    os.chmod(temporary, SHARED_FILE_MODE)


def tile_images(images: np.ndarray, columns: int, gap: int = 2, fill: float = 1.0) -> np.ndarray:
    """Return images (N, H, W) or (N, H, W, 3) laid out in a grid of `columns` with `gap` pixels of `fill` between.

    One image of the whole grid draws far faster than one axes per tile.
    """
    count, height, width = images.shape[:3]
    rows = -(-count // columns)  # ceiling division
    shape = (rows * (height + gap) - gap, columns * (width + gap) - gap, *images.shape[3:])
    grid = np.full(shape, fill, dtype=np.float32)
    for index in range(count):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[top:top + height, left:left + width] = images[index]
    return grid
