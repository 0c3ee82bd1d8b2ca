"""Accuracy of `neuralab predict` on photo-like MNIST test digits, beside the same files naively resized to 28x28.

The files come from bench/photo_digits.py: real MNIST test digits as dark ink on lit paper,
scaled up, off-centre, as JPEG, RGBA PNG, grayscale and EXIF-rotated files. The preprocessed
side runs the `neuralab predict` command in a subprocess and reads its CSV. The naive side opens
each file with PIL, converts it to grayscale, resizes it to 28x28 (bilinear), normalizes it with
the run's mean and std and takes the model's top class. It does not invert, crop, centre or
apply EXIF orientation. One run, deterministic for a given --seed. Results with the mnist-cnn seed-0
run on 2 CPU cores: 100.0% against 8.0% naive for 500 files (seed 0), and 99.4% against 9.0%
for 1,000 files (seed 1). Details are in BENCHMARKS.md.

    python bench/predict_photos.py RUN_DIR [--count 500] [--seed 0] [--json bench/results/predict_photos.json]
"""

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from common import machine
from photo_digits import KINDS, write_photo_digits
from PIL import Image

import neuralab


def predict_with_cli(run_dir: Path, folder: Path) -> dict[str, str]:
    """Return {file name: predicted class} from `neuralab predict RUN_DIR FOLDER --format csv`."""
    command = [sys.executable, "-m", "neuralab", "predict", str(run_dir), str(folder), "--format", "csv",
               "--top-k", "1"]
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    rows = csv.DictReader(io.StringIO(finished.stdout))
    return {Path(row["file"]).name: row["class_1"] for row in rows}


def predict_naively(run_dir: Path, paths: list[Path]) -> dict[str, str]:
    """Return {file name: predicted class} for each file resized to 28x28 without any other preprocessing."""
    predictor = neuralab.load(run_dir)
    pixels = np.stack([np.asarray(Image.open(path).convert("L").resize((28, 28), Image.Resampling.BILINEAR))
                       for path in paths])
    outputs = predictor.forward(torch.from_numpy(pixels)[:, None])  # (N, 28, 28) -> (N, 1, 28, 28)
    return {path.name: predictor.classes[int(index)] for path, index in zip(paths, outputs.argmax(dim=1))}


def accuracy_by_kind(predicted: dict[str, str], labels: dict[str, str]) -> dict[str, float]:
    """Return the fraction correct overall ("all") and per file kind (the suffix of the file stem)."""
    correct, total = defaultdict(int), defaultdict(int)
    for name, label in labels.items():
        kind = next(kind for kind in KINDS if Path(name).stem.endswith(kind))
        for key in ("all", kind):
            total[key] += 1
            correct[key] += predicted.get(name) == label
    return {key: correct[key] / total[key] for key in ("all", *KINDS) if total[key]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished mnist-cnn (or other MNIST) run directory")
    parser.add_argument("--count", type=int, default=500, help="number of photo-like digits (at least 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of bench/photo_digits.py")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="photo-digits-") as folder:
        written = write_photo_digits(Path(folder), args.count, args.seed)
        labels = {path.name: str(label) for path, label in written}
        preprocessed = accuracy_by_kind(predict_with_cli(args.run_dir, Path(folder)), labels)
        naive = accuracy_by_kind(predict_naively(args.run_dir, [path for path, _ in written]), labels)

    print(f"{args.count} photo-like MNIST test digits (seed {args.seed}), run {args.run_dir.name}")
    print(f"{'file kind':<12} {'neuralab predict':>17} {'naive resize':>13}")
    for kind in preprocessed:
        print(f"{kind:<12} {100 * preprocessed[kind]:16.1f}% {100 * naive[kind]:12.1f}%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"run": str(args.run_dir), "count": args.count, "seed": args.seed, "preprocessed": preprocessed,
                  "naive": naive, "machine": machine(torch.get_num_threads())}
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
