"""`neuralab evaluate RUN_DIR`: recompute the test numbers from a run's saved weights."""

import argparse
import json
from pathlib import Path

from neuralab.training.inference import evaluate_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="recompute test metrics from a run's saved weights",
                                   description="Recompute test loss, accuracy, per-class precision, recall and F1 "
                                   "and the confusion matrix (segmentation: per-class IoU and Dice, mean IoU) from "
                                   "RUN_DIR/model.safetensors.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory created by `neuralab train`")
    parser.add_argument("--data-dir", type=Path, help="folder holding the data set's IDX files, or the image folder "
                        "(default: the run's)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of tables")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    metrics = evaluate_run(args.run_dir, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    segmentation = metrics.get("task") == "segmentation"
    print(f"test loss {metrics['test_loss']:.4f}  {'pixel accuracy' if segmentation else 'accuracy'} "
          f"{100 * metrics['test_accuracy']:.2f}%  on {metrics['test_samples']} images")
    if segmentation:
        print_segmentation(metrics)
        return 0
    print_per_class(metrics)
    print_confusion(metrics["confusion_matrix"], metrics["classes"])
    return 0


def _cell(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.4f}"


def print_per_class(metrics: dict) -> None:
    per_class, width = metrics["per_class"], max(len(name) for name in metrics["classes"])
    print(f"\n{'class':<{width}}  precision  recall     f1      support")
    for index, name in enumerate(metrics["classes"]):
        print(f"{name:<{width}}  {_cell(per_class['precision'][index])}     {_cell(per_class['recall'][index])}"
              f"     {_cell(per_class['f1'][index])}  {per_class['support'][index]:7d}")
    macro = metrics["macro"]
    print(f"{'macro':<{width}}  {_cell(macro['precision'])}     {_cell(macro['recall'])}     {_cell(macro['f1'])}")


def print_confusion(matrix: list[list[int]], classes: list[str]) -> None:
    width = max(6, max(len(str(count)) for row in matrix for count in row) + 1)
    print("\nconfusion matrix (rows: true class, columns: predicted class)")
    print(" " * 12 + "".join(f"{name[:width - 1]:>{width}}" for name in classes))
    for name, row in zip(classes, matrix):
        print(f"{name[:11]:<12}" + "".join(f"{count:>{width}}" for count in row))


def print_segmentation(metrics: dict) -> None:
    """Print per-class IoU and Dice, the mean IoU with and without background, and absent classes."""
    per_class, width = metrics["per_class"], max(5, max(len(name) for name in metrics["classes"]))
    print(f"\n{'class':<{width}}    iou     dice")
    for index, name in enumerate(metrics["classes"]):
        print(f"{name:<{width}}  {_cell(per_class['iou'][index])}  {_cell(per_class['dice'][index])}")
    print(f"\nmean IoU {_cell(metrics['mean_iou'])}, without background {_cell(metrics['mean_iou_without_background'])}"
          f", mean Dice {_cell(metrics['mean_dice'])} over {metrics['test_pixels']} pixels")
    if metrics["absent_classes"]:
        print(f"absent from masks and predictions (left out of the means): {', '.join(metrics['absent_classes'])}")
