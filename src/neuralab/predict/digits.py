"""Turn a photo of a dark digit or garment on light paper into the bright-on-black form of MNIST.

In the MNIST database (LeCun, Cortes and Burges), the NIST digits were size-normalized to fit a
20x20 box with their aspect ratio kept, then centred in 28x28 by their centre of mass. Their ink
is white on black. Fashion-MNIST's products were trimmed, resized, extended and negated (Xiao,
Rasul and Vollgraf 2017, arXiv:1708.07747); here that becomes: longest side 28, centred. A photo
differs in every respect, so the steps here undo that: detect a light background and invert,
flatten uneven lighting, crop to the object, then scale and place it as the data set did.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

CANVAS = 28  # side of an MNIST or Fashion-MNIST image
DIGIT_BOX = 20  # MNIST digits fit a 20x20 box inside the 28x28 canvas
# Mean centre of mass of the 60,000 MNIST training digits in pixel-index coordinates
# (measured: row 13.996, column 14.007).
MNIST_CENTRE = 14.0
BORDER_FRACTION = 0.05  # width of the frame whose median decides whether the background is light
LIGHT_THRESHOLD = 127.5  # a frame median above mid-grey means a light background
NOISE_SIGMAS = 3.0  # background residuals within this many standard deviations become black
MAD_TO_SIGMA = 1.4826  # median absolute deviation times this estimates the standard deviation of a normal
FIT_GRID = 64  # the background surface is fitted on about this many samples per side
TRIM_ROUNDS = 5  # refits of the background surface without the samples far above it
MIN_NOISE = 1.0  # the smallest noise level assumed, in grey levels: a noiseless background keeps samples near its fit
BOX_LEVEL = 0.25  # pixels below this fraction of the brightest ink do not extend the object's box
BOX_MASS_TRIM = 0.001  # each side of the object's box may cut off this fraction of the ink, so specks don't count
MIN_CONTRAST = 8.0  # ink less than this many levels above the background counts as no object
NO_OBJECT = "no object found"  # the step reported for an image without ink, such as a blank page


def has_light_background(gray: np.ndarray) -> bool:
    """Return whether the median of the image's outer frame is lighter than mid-grey."""
    band = max(1, round(BORDER_FRACTION * min(gray.shape)))
    frame = np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[:, :band].ravel(),
                            gray[:, -band:].ravel()])
    return float(np.median(frame)) > LIGHT_THRESHOLD


def otsu_threshold(levels: np.ndarray) -> int:
    """Return the level t that best splits uint8 `levels` into <= t and > t (Otsu 1979: maximum between-class variance)."""
    histogram = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(histogram * np.arange(256))
    mean_total = mass_low[-1] / weight_low[-1]
    # Only splits with pixels on both sides count: at the top level the empty upper class would
    # divide a rounding error by zero and win.
    split = (weight_low > 0) & (weight_high > 0)
    between = np.zeros(256)
    between[split] = ((mean_total * weight_low[split] - mass_low[split]) ** 2
                      / (weight_low[split] * weight_high[split]))
    return int(np.argmax(between))


def _grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return the row and column indices of about FIT_GRID x FIT_GRID evenly spaced samples."""
    step = max(1, max(shape) // FIT_GRID)
    return np.arange(0, shape[0], step), np.arange(0, shape[1], step)


def fit_background(ink: np.ndarray, threshold: float) -> np.ndarray:
    """Return a quadratic surface fitted to the pixels at or below `threshold`: the uneven lighting to subtract.

    The fit uses about FIT_GRID x FIT_GRID evenly spaced samples, which pins 6 coefficients well.
    Samples far above the first fit, such as the soft edge of the ink, are dropped and the
    surface is fitted again, so that an evenly lit image gets a flat surface.
    """
    height, width = ink.shape
    rows, cols = _grid(ink.shape)
    samples = ink[np.ix_(rows, cols)].astype(np.float64)
    y_axis = np.linspace(-1, 1, height)
    x_axis = np.linspace(-1, 1, width)
    y, x = np.meshgrid(y_axis[rows], x_axis[cols], indexing="ij")
    background = samples <= threshold
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)[background]  # (S, 6)
    values = samples[background]
    coefficients = _least_squares(terms, values)
    if coefficients is None:  # too few samples, or samples on one line: assume even lighting
        return np.full(ink.shape, float(np.median(samples)), dtype=np.float32)
    for _ in range(TRIM_ROUNDS):
        residuals = values - terms @ coefficients
        spread = MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals))))
        near_surface = residuals <= NOISE_SIGMAS * max(spread, MIN_NOISE)
        if near_surface.all():
            break
        refit = _least_squares(terms[near_surface], values[near_surface])
        if refit is None:
            break
        terms, values, coefficients = terms[near_surface], values[near_surface], refit
    a, bx, by, bxx, bxy, byy = coefficients.astype(np.float32)  # float64 scalars would make the surface float64
    y_full = y_axis.astype(np.float32)[:, None]
    x_full = x_axis.astype(np.float32)[None, :]
    return (a + by * y_full + byy * y_full**2) + (bx + bxx * x_full + bxy * y_full) * x_full


def _least_squares(terms: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """Return the coefficients that best fit `values` from `terms`, or None when the samples cannot pin them."""
    gram = terms.T @ terms
    if len(terms) < 4 * gram.shape[0] or np.linalg.cond(gram) > 1e8:
        return None
    return np.linalg.solve(gram, terms.T @ values)  # the normal equations


def extract_ink(gray: np.ndarray, stretch: bool) -> tuple[np.ndarray, list[str]]:
    """Return the object as bright float32 levels on a black background, and the steps applied.

    A light background is inverted, the fitted background surface is subtracted and the noise
    left on it is set to 0. With `stretch`, the typical ink level is raised to 255, as in MNIST's
    saturated strokes. Without it the object keeps its own levels, so garments keep their shading.
    Thresholds and noise are estimated on the same evenly spaced samples as the background fit.
    """
    steps = []
    ink = gray.astype(np.float32)
    if has_light_background(gray):
        np.subtract(255.0, ink, out=ink)
        steps.append("inverted (light background)")
    rows, cols = _grid(ink.shape)
    surface = fit_background(ink, otsu_threshold(_levels(ink[np.ix_(rows, cols)])))
    flat = np.subtract(ink, surface, out=ink)
    # A second split on the flattened image: the lighting no longer shifts the background's level.
    samples = flat[np.ix_(rows, cols)]
    threshold = otsu_threshold(_levels(samples))
    residuals = samples[samples <= threshold]
    noise = MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals)))) if residuals.size else 0.0
    low = NOISE_SIGMAS * noise
    foreground = flat[flat > max(threshold, low)]
    high = float(np.median(foreground)) if foreground.size else low
    if high - low < MIN_CONTRAST:
        return np.zeros_like(flat), steps + [NO_OBJECT]
    if float(surface.max() - surface.min()) > MIN_CONTRAST:
        steps.append("uneven lighting flattened")
    if stretch:
        flat -= low
        flat *= 255.0 / (high - low)
        return np.clip(flat, 0, 255, out=flat), steps
    flat[flat <= low] = 0
    return np.clip(flat, 0, 255, out=flat), steps


def _levels(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0, 255).astype(np.uint8)


def object_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """Return (top, bottom, left, right), bottom and right exclusive, of the ink, or None for a blank image.

    Only pixels of at least BOX_LEVEL of the brightest ink count, so faint lighting residue far
    from the object does not stretch the box. Each side then moves inwards past at most
    BOX_MASS_TRIM of their mass, so a few bright noise specks do not stretch it either.
    """
    # NOTE: a stain or a ruled line brighter than BOX_LEVEL of the ink counts as part of the object,
    # so the box grows to take it in and the object comes out smaller than the data set's.
    peak = float(ink.max()) if ink.size else 0.0
    if peak <= 0:
        return None
    strong = np.where(ink >= BOX_LEVEL * peak, ink, 0)
    total = float(strong.sum())
    top, bottom = _trimmed_span(strong.sum(axis=1), total)
    left, right = _trimmed_span(strong.sum(axis=0), total)
    return top, bottom, left, right


def _trimmed_span(profile: np.ndarray, total: float) -> tuple[int, int]:
    cumulative = np.cumsum(profile)
    start = int(np.searchsorted(cumulative, BOX_MASS_TRIM * total, side="right"))
    stop = int(np.searchsorted(cumulative, (1 - BOX_MASS_TRIM) * total, side="left")) + 1
    return start, max(stop, start + 1)


def scale_to_fit(crop: np.ndarray, box: int) -> np.ndarray:
    """Return `crop` scaled so its longest side is `box` pixels, aspect ratio kept, with Lanczos filtering."""
    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL sizes are (width, height)
    image = Image.fromarray(np.clip(crop, 0, 255).astype(np.float32))  # float32 (H, W) -> mode "F"
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def place(patch: np.ndarray, top: int, left: int) -> np.ndarray:
    """Return a black 28x28 canvas with `patch` at (top, left); parts beyond the edges are cut off."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    rows = slice(max(0, top), min(CANVAS, top + patch.shape[0]))
    cols = slice(max(0, left), min(CANVAS, left + patch.shape[1]))
    canvas[rows, cols] = patch[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
    return canvas


def centre_by_mass(patch: np.ndarray) -> np.ndarray:
    """Return `patch` placed in 28x28 so that its centre of mass falls on MNIST's mean centre of mass."""
    mass = float(patch.sum())
    if mass <= 0:
        return place(patch, (CANVAS - patch.shape[0]) // 2, (CANVAS - patch.shape[1]) // 2)
    row = float((patch.sum(axis=1) * np.arange(patch.shape[0])).sum()) / mass
    col = float((patch.sum(axis=0) * np.arange(patch.shape[1])).sum()) / mass
    return place(patch, round(MNIST_CENTRE - row), round(MNIST_CENTRE - col))


def centre_by_box(patch: np.ndarray) -> np.ndarray:
    """Return `patch` placed in the middle of a 28x28 canvas."""
    return place(patch, (CANVAS - patch.shape[0]) // 2, (CANVAS - patch.shape[1]) // 2)


@dataclass(frozen=True)
class ObjectStyle:
    """The scaling and placement of a data set's objects in the 28x28 canvas."""

    stretch: bool  # raise the ink to full brightness (digits), or keep the object's own levels (garments)
    box: int  # the object's longest side in the canvas, in pixels
    centre: Callable[[np.ndarray], np.ndarray]
    placement: str  # the step as reported

    def render(self, ink: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """Return the object in `box` of `ink` scaled and placed in a uint8 28x28 canvas."""
        top, bottom, left, right = box
        canvas = self.centre(scale_to_fit(ink[top:bottom, left:right], self.box))
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


MNIST_STYLE = ObjectStyle(True, DIGIT_BOX, centre_by_mass, f"fit into {DIGIT_BOX}x{DIGIT_BOX}, centred by mass")
FASHION_STYLE = ObjectStyle(False, CANVAS, centre_by_box, f"longest side fit to {CANVAS}, centred")
