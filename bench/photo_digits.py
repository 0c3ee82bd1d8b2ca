"""Write real MNIST test digits as photo-like image files, with their true labels, for the predict benchmarks.

Each file shows one digit of the embedded MNIST test split as dark ink on off-white paper. The
paper is lit unevenly (a linear brightness gradient from 60-80% to 100% in a random direction),
the digit is scaled up 3-7x and placed off-centre on a larger sheet, and sensor noise is added. The file kinds take turns: RGB JPEG, RGBA
PNG with translucent paper and opaque ink, grayscale PNG, grayscale JPEG, and JPEG stored rotated
with an EXIF Orientation tag that undoes the rotation. Each file is drawn from its own generator
(numpy's PCG64 seeded with --seed and the digit's index), so the same arguments give the same
files. labels.csv lists file,label.

    python bench/photo_digits.py OUT_DIR [--count 500] [--seed 0] [--first 0]
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from neuralab.data.sources import MNIST, load_split

KINDS = ("rgb-jpeg", "rgba-png", "gray-png", "gray-jpeg", "exif-jpeg")
# EXIF Orientation value -> the transpose that turns the upright image into the stored pixels. The
# viewer (PIL.ImageOps.exif_transpose) applies the inverse: 3 rotates by 180, 6 by 270, 8 by 90 degrees.
STORED_ROTATION = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
ORIENTATION_TAG = 0x0112
SCALE_RANGE = (3.0, 7.0)  # digit side in the photo: 84 to 196 pixels
SHEET_RANGE = (1.3, 2.0)  # sheet side relative to the digit's
NOISE_STD = 3.0  # sensor noise in 8-bit levels


def render(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return an RGB uint8 photo of `digit` (uint8 28x28, white on black): dark ink on lit paper."""
    side = round(digit.shape[0] * rng.uniform(*SCALE_RANGE))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    height, width = (round(side * rng.uniform(*SHEET_RANGE)) for _ in range(2))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    coverage = np.zeros((height, width, 1), dtype=np.float32)
    coverage[top:top + side, left:left + side, 0] = np.clip(ink, 0, 1)

    paper = rng.uniform(200, 245) + rng.uniform(-8, 8, size=3)
    pen = rng.uniform(10, 70, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    along = np.cos(angle) * cols / width + np.sin(angle) * rows / height
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    darkest = rng.uniform(0.6, 0.8)
    light = (darkest + (1 - darkest) * along)[..., None]

    photo = (paper * (1 - coverage) + pen * coverage) * light + rng.normal(0, NOISE_STD, size=(height, width, 3))
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


def save(photo: np.ndarray, path_stem: Path, kind: str, rng: np.random.Generator) -> Path:
    """Write `photo` as file kind `kind` and return its path."""
    image = Image.fromarray(photo)
    quality = int(rng.integers(75, 96))
    if kind == "rgb-jpeg":
        path = path_stem.with_suffix(".jpg")
        image.save(path, quality=quality)
    elif kind == "rgba-png":
        path = path_stem.with_suffix(".png")
        # Translucent paper and opaque ink, as in a cut-out: the ink's darkness sets its opacity.
        paper_alpha = rng.uniform(96, 224)
        darkness = 1 - photo.mean(axis=-1, keepdims=True) / max(float(photo.mean()), 1.0)
        alpha = np.clip(paper_alpha + (255 - paper_alpha) * 4 * darkness, paper_alpha, 255).astype(np.uint8)
        Image.fromarray(np.dstack([photo, alpha])).save(path)  # (H, W, 4) -> mode "RGBA"
    elif kind in ("gray-png", "gray-jpeg"):
        path = path_stem.with_suffix(".png" if kind == "gray-png" else ".jpg")
        image.convert("L").save(path, **({} if kind == "gray-png" else {"quality": quality}))
    else:
        path = path_stem.with_suffix(".jpg")
        orientation = int(rng.choice(list(STORED_ROTATION)))
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        image.transpose(STORED_ROTATION[orientation]).save(path, quality=quality, exif=exif)
    return path


def write_photo_digits(folder: Path, count: int, seed: int = 0, first: int = 0) -> list[tuple[Path, int]]:
    """Write `count` photo-like MNIST test digits, starting at test index `first`, and labels.csv into `folder`."""
    images, labels = load_split(MNIST, "test")
    if not 0 < count <= len(labels) - first:
        raise ValueError(f"count must be in 1..{len(labels) - first} for first={first}, got {count}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(first, first + count):
        rng = np.random.default_rng([seed, index])
        kind = KINDS[index % len(KINDS)]
        photo = render(images[index].numpy(), rng)
        path = save(photo, folder / f"digit{index:05d}-{kind}", kind, rng)
        written.append((path, int(labels[index])))
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label"])
        writer.writerows((path.name, label) for path, label in written)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="output folder (created if missing)")
    parser.add_argument("--count", type=int, default=500, help="number of digits to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendering")
    parser.add_argument("--first", type=int, default=0, help="index of the first MNIST test digit")
    args = parser.parse_args()
    written = write_photo_digits(args.folder, args.count, args.seed, args.first)
    print(f"wrote {len(written)} photo-like digits and labels.csv to {args.folder}")


if __name__ == "__main__":
    main()
