"""`neuralab predict RUN_DIR PATH...`: classify your own images, or segment them into mask files."""

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from neuralab.predict import Classification, Failure, Predictor, Segmentation, load
from neuralab.predict.outputs import OutputNames, input_image, mask_image, overlay_image, save_png
from neuralab.predict.predictor import DEFAULT_BATCH_SIZE

FORMATS = ("table", "json", "csv")
DEFAULT_TOP_K = 3
MAX_FILE_COLUMN = 48  # longer file names are shortened from the left in the table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict classes or masks for your own images with a trained run",
        description="Predict with the model of a finished run. Classification prints the top classes of each "
        "image with their probabilities; segmentation writes a mask and an overlay per image and prints the "
        "pixels per class. Each image gets the preprocessing that matches the run's training data (for MNIST: "
        "grayscale, invert a light background, crop to the digit, fit into 20x20, centre by mass in 28x28), "
        "reported per image.",
        epilog="Exit status: 0 when every image was predicted; 1 when some inputs could not be read (each is "
        "named on stderr and the others are still predicted); 2 when the run directory or an option is invalid.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by `neuralab train`")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files, folders (the images directly inside) or glob patterns such as "
                        "'photos/**/*.jpg'; JPEG, PNG, BMP, GIF, TIFF and WebP of any size and mode")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, metavar="K",
                        help=f"classification: number of most probable classes to report (default: {DEFAULT_TOP_K})")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--save-inputs", type=Path, metavar="DIR",
                        help="write the image the model saw (after preprocessing, before normalization) as "
                        "DIR/<name>.png")
    parser.add_argument("--output-dir", type=Path, default=Path("predictions"), metavar="DIR",
                        help="segmentation: folder for <name>.mask.png (class indices) and <name>.overlay.png "
                        "(default: predictions)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per model call (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes that decode and preprocess files (default: one per CPU for 64 files or "
                        "more, otherwise 0: decode in this process)")
    parser.add_argument("--device", default="cpu", help="device: auto, cpu, cuda or mps (default: cpu)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    predictor = load(args.run_dir, device=args.device)
    if args.save_inputs is not None:
        _output_folder(args.save_inputs, "--save-inputs")
    if predictor.task == "segmentation":
        _output_folder(args.output_dir, "--output-dir")
    rows, skipped = [], 0
    names = OutputNames()
    for result in predictor.iter_predict(args.paths, top_k=args.top_k, batch_size=args.batch_size,
                                         num_workers=args.workers):
        if isinstance(result, Failure):
            print(f"neuralab predict: warning: {result.message}; skipped", file=sys.stderr)
            skipped += 1
            continue
        stem = names.stem(result.source)
        row = _row(result, predictor)
        if args.save_inputs is not None:
            row["input_image"] = str(save_png(input_image(result.pixels), args.save_inputs / f"{stem}.png"))
        if isinstance(result, Segmentation):
            row.update(_write_segmentation(result, args.output_dir, stem))
        warning = predictor.warning(result)
        if warning is not None:
            print(f"neuralab predict: warning: {warning}", file=sys.stderr)
        rows.append(row)
    PRINTERS[args.format](rows, predictor)
    if skipped:
        print(f"neuralab predict: {skipped} input(s) skipped, {len(rows)} predicted", file=sys.stderr)
    return 1 if skipped else 0


def _output_folder(path: Path, flag: str) -> None:
    """Create the folder `path` for output files, or raise ValueError naming `flag` when it cannot be one."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file, not a folder; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot create the folder ({error.strerror}); pass a folder you can "
                         "write to") from None


def _row(result: Classification | Segmentation, predictor: Predictor) -> dict[str, Any]:
    height, width = result.size
    row: dict[str, Any] = {"file": result.source, "height": height, "width": width}
    if isinstance(result, Classification):
        row.update({"class": result.label, "probability": result.probability,
                    "top_k": [{"class": name, "probability": value} for name, value in result.top_k]})
    else:
        row.update({"class_pixels": result.class_pixels, "all_background": result.all_background})
    row["preprocessing"] = list(result.steps)
    return row


def _write_segmentation(result: Segmentation, output_dir: Path, stem: str) -> dict[str, str]:
    mask_path = save_png(mask_image(result.mask), output_dir / f"{stem}.mask.png")
    overlay_path = save_png(overlay_image(result.display, result.mask), output_dir / f"{stem}.overlay.png")
    return {"mask": str(mask_path), "overlay": str(overlay_path)}


def print_json(rows: list[dict[str, Any]], predictor: Predictor) -> None:
    print(json.dumps(rows, indent=2))


def print_csv(rows: list[dict[str, Any]], predictor: Predictor) -> None:
    """Print one CSV line per image: classification ranks as class_1, probability_1, ...; masks as pixel counts."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if predictor.task == "classification":
        ranks = max((len(row["top_k"]) for row in rows), default=0)
        header = [f"{kind}_{rank}" for rank in range(1, ranks + 1) for kind in ("class", "probability")]
        writer.writerow(["file", "height", "width", *header, "preprocessing"])
        for row in rows:
            cells = [cell for entry in row["top_k"] for cell in (entry["class"], f"{entry['probability']:.6f}")]
            writer.writerow([row["file"], row["height"], row["width"], *cells, "; ".join(row["preprocessing"])])
        return
    pixel_columns = [f"pixels_{name}" for name in predictor.classes]
    writer.writerow(["file", "height", "width", "mask", "overlay", *pixel_columns, "all_background",
                     "preprocessing"])
    for row in rows:
        writer.writerow([row["file"], row["height"], row["width"], row["mask"], row["overlay"],
                         *row["class_pixels"].values(), row["all_background"], "; ".join(row["preprocessing"])])


def print_table(rows: list[dict[str, Any]], predictor: Predictor) -> None:
    """Print one aligned line per image, the preprocessing steps last; nothing when no image was predicted."""
    if not rows:
        return
    width = min(MAX_FILE_COLUMN, max([len("file")] + [len(row["file"]) for row in rows]))
    if predictor.task == "classification":
        ranked = ["  ".join(f"{entry['class']} {100 * entry['probability']:.1f}%" for entry in row["top_k"])
                  for row in rows]
        header = "top " + str(_ranks(rows))
        ranked_width = max(len(header), *map(len, ranked))
        print(f"{'file':<{width}}  {'class':<12}  {header:<{ranked_width}}  preprocessing")
        for row, classes in zip(rows, ranked):
            print(f"{_fit(row['file'], width):<{width}}  {row['class']:<12}  {classes:<{ranked_width}}  "
                  f"{', '.join(row['preprocessing'])}")
        return
    mask_width = max(len("mask"), *(len(row["mask"]) for row in rows))
    print(f"{'file':<{width}}  {'size':>9}  {'mask':<{mask_width}}  pixels per class (present classes)")
    for row in rows:
        counts = ", ".join(f"{name} {count}" for name, count in row["class_pixels"].items() if count)
        size = f"{row['height']}x{row['width']}"
        print(f"{_fit(row['file'], width):<{width}}  {size:>9}  {row['mask']:<{mask_width}}  {counts}")


def _ranks(rows: list[dict[str, Any]]) -> int:
    return max((len(row["top_k"]) for row in rows), default=0)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


PRINTERS = {"table": print_table, "json": print_json, "csv": print_csv}
