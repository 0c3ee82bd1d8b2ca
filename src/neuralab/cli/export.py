"""`neuralab export RUN_DIR --format onnx|pt2`: write the run's model as one file, checked against PyTorch."""

import argparse
import sys
from pathlib import Path

from neuralab.predict.export import FORMATS, TOLERANCE, ExportCheckError, MissingExtraError, export_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model to ONNX or torch.export (.pt2)",
        description="Export the model of a finished run in eval mode, with a dynamic batch size (and any height "
        "and width that is a multiple of the U-Net's down-sampling factor), its classes and preprocessing in the "
        "file's metadata. The file is then loaded (onnxruntime for ONNX) and compared with the PyTorch model on "
        f"batch sizes 1 and 7; a maximum absolute difference above {TOLERANCE:g} fails and leaves no file. "
        "ONNX needs the optional packages: pip install 'neuralab[export]'.",
        epilog="Exit status: 0 on success; 1 when the exported file does not match PyTorch; 2 when the run, an "
        "option or a required package is missing or invalid.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by `neuralab train`")
    parser.add_argument("--format", choices=FORMATS, required=True, help="onnx (onnxruntime and others) or pt2 "
                        "(torch.export.load)")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="file to write, ending in .onnx or .pt2 (default: RUN_DIR/model.onnx or model.pt2)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = export_run(args.run_dir, args.format, args.output)
    except MissingExtraError as error:
        print(f"neuralab export: error: {error}", file=sys.stderr)
        return 2
    except ExportCheckError as error:
        print(f"neuralab export: error: {error}", file=sys.stderr)
        return 1
    for shape, difference in report.differences:
        print(f"input {'x'.join(map(str, shape)):<14}  max abs difference from PyTorch {difference:.2e}")
    print(f"wrote {report.path} ({report.path.stat().st_size / 1024:.0f} KiB); max abs difference "
          f"{report.max_difference:.2e} (limit {TOLERANCE:g})")
    return 0
