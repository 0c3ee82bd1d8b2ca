"""`neuralab plot activations|losses`: draw a concept figure to a PNG file and print its path."""

import argparse
from pathlib import Path

# Figure name -> (help text, default output file).
FIGURES = {
    "activations": ("every activation f(x) with its autograd derivative f'(x), over x in [-6, 6]",
                    Path("plots/activations.png")),
    "losses": ("MSE, MAE, BCE and cross-entropy against the prediction, and the log_softmax + NLL check",
               Path("plots/losses.png")),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="draw a concept figure (activations, losses) to a PNG file",
                                   description="Draw a figure that shows how a building block behaves "
                                   "and print the path of the PNG file written.")
    figures = parser.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    for name, (help_text, default_output) in FIGURES.items():
        figure_parser = figures.add_parser(name, help=help_text, description=f"Draw {help_text}.")
        figure_parser.add_argument("--output", type=Path, default=default_output, metavar="FILE",
                                   help=f"PNG file to write, creating missing folders (default: {default_output})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that the other commands keep working, and start faster, without matplotlib.
    from neuralab.inspect import plot_activations, plot_losses

    plot = {"activations": plot_activations, "losses": plot_losses}[args.figure]
    result = plot(args.output)
    print(result["path"])
    return 0
