"""The `neuralab` command: one small module per subcommand, each parsing, calling the library and printing."""

import argparse
import logging
import sys

from neuralab.cli import compare, data, evaluate, export, inspection, listing, plot, predict, report, train
from neuralab.data.idx import DataFileError
from neuralab.inspect.tensorboard import OptionalDependencyError
from neuralab.training.checkpoint import CheckpointError

COMMANDS = (train, evaluate, predict, export, listing, plot, report, inspection, compare, data)

# Errors that mean "bad input": one line naming the value and the fix, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, DataFileError,
               CheckpointError, OptionalDependencyError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuralab", description="Train, evaluate and inspect neural networks "
                                     "with PyTorch, from a single neuron to a U-Net.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log library details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except BrokenPipeError:  # output piped into a reader that closed early, e.g. `| head`
        sys.stderr.close()
        return 0
    except USER_ERRORS as error:
        print(f"neuralab {args.command}: error: {error}", file=sys.stderr)
        return 2
