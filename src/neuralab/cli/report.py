"""`neuralab report RUN_DIR`: write a run's figures and its self-contained report.html."""

import argparse
from pathlib import Path

from neuralab.inspect.report import write_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write a run's figures and a self-contained report.html",
        description="Draw a finished run's curves, confusion matrix, per-class scores, highest-loss test images "
        "(segmentation: predicted masks and per-class IoU), weight histograms, first-layer weights, gradient "
        "norms, activation statistics and parameter table as PNG files in RUN_DIR/report/, and embed them all "
        "in RUN_DIR/report.html, which opens offline. Training writes the same report unless --no-report is given.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory created by `neuralab train`")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(write_report(args.run_dir))
    return 0
