"""`neuralab data check PATH`: report an image folder's contents and every problem, by file name."""

import argparse
from collections import Counter
from pathlib import Path

from neuralab.data.folder_check import FolderReport, check_folder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect a data folder before training",
                                   description="Commands that inspect data folders.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="report an image folder's contents and problems",
        description="Read every image and mask of an image folder (one sub-folder per class, or images/ and "
        "masks/) and its test/ sub-folder the way training would. Print the counts, sizes, modes, classes and "
        "mask values, then every problem by file name. The exit status is 1 when there are errors.",
    )
    check.add_argument("path", type=Path, metavar="PATH", help="the data folder, as passed to --data-dir")
    check.add_argument("--num-classes", type=int,
                       help="number of mask classes, background included (default: the lines of classes.txt)")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = check_folder(args.path, num_classes=args.num_classes)
    print_summary(report)
    print_problems(report)
    return 1 if report.errors else 0


def _counts(counter: Counter, unit: str, name=str) -> str:
    """Return "key (count units)" for every entry, sorted by key. `unit` is the singular form."""
    return ", ".join(f"{name(key)} ({count} {unit}{'' if count == 1 else 's'})" for key, count in sorted(counter.items()))


def print_summary(report: FolderReport) -> None:
    splits = ", ".join(f"{split} {count}" for split, count in report.samples.items())
    kind = "image/mask pairs" if report.task == "segmentation" else "images"
    print(f"{report.root}: {report.task} folder; {kind}: {splits}")
    if report.classes is None:
        print("classes: unknown (pass --num-classes or write classes.txt)")
    else:
        print(f"classes ({len(report.classes)}, from {report.classes_source}): {', '.join(report.classes)}")
    if report.class_counts:
        print(f"images per class: {_counts(report.class_counts, 'image')}")
    print(f"image sizes (height x width): {_counts(report.sizes, 'image', lambda size: f'{size[0]}x{size[1]}')}")
    print(f"image modes: {_counts(report.modes, 'image')}")
    if report.task == "segmentation":
        print(f"mask values: {_counts(report.mask_values, 'pixel')}")


def print_problems(report: FolderReport) -> None:
    if not report.problems:
        print("no problems found")
        return
    print("problems:")
    for problem in report.problems:
        print(f"  {problem.severity:<7}  {_relative(problem.path, report.root)}: {problem.message}")
    print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
