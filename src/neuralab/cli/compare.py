"""`neuralab compare RECIPE --vary KEY=V1,V2,...`: train variants that differ in one key and compare them."""

import argparse
from pathlib import Path

from neuralab.cli.progress import ConsoleReporter
from neuralab.cli.train import add_config_flags, resolve_config
from neuralab.inspect.compare import Variant, compare, markdown_table, parse_vary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="train variants that differ in one key and compare curves and final numbers",
        description="Train one variant of RECIPE per value of --vary, each with the same seed, data and epochs, "
        "so the varied key is the only difference. Every other flag applies to all variants. Writes "
        "OUTPUT_DIR/compare-RECIPE-KEY-<time>/ with one run directory per variant, curves.png and the table of "
        "final metrics, wall time and mean first-layer gradient norm over the first epoch (table.csv, table.md). "
        "Variants write no report.html unless --report is given, and record layer statistics at every step "
        "unless --stats-every is given, so that the gradient column averages the whole first epoch.",
    )
    parser.add_argument("recipe", help="recipe name, see `neuralab list recipes`")
    parser.add_argument("--vary", required=True, action="append", metavar="KEY=V1,V2,...",
                        help="the configuration key to vary and its values, e.g. optimizer=sgd,adam,rmsprop, "
                        "activation=relu,sigmoid or hidden_sizes=[64],[64,64]; a bare key names a field of any "
                        "section or a model option, a full key looks like optim.lr. One key per comparison.")
    add_config_flags(parser)
    parser.set_defaults(run=run, resume=None)


def run(args: argparse.Namespace) -> int:
    if len(args.vary) > 1:
        raise ValueError(f"compare varies one key at a time, got --vary {' --vary '.join(args.vary)}; "
                         "run one comparison per key")
    key, values = parse_vary(args.vary[0])
    if getattr(args, "train.report") is None:
        setattr(args, "train.report", False)  # reports cost seconds per variant, so only --report requests them
    if getattr(args, "train.stats_every") is None:
        # Comparisons are short, and sampling every 10th step could leave the first epoch with one sample.
        setattr(args, "train.stats_every", 1)
    config = resolve_config(args)
    epochs = "1 epoch" if config.train.epochs == 1 else f"{config.train.epochs} epochs"
    shared = f"seed {config.train.seed}" if key.endswith("epochs") else f"{epochs} each, seed {config.train.seed}"
    print(f"comparing {len(values)} variants of {config.recipe}, {key} = {', '.join(values)}; {shared}")

    def reporter_for(variant: Variant, folder: Path) -> ConsoleReporter:
        print(f"\n{variant.label}: run {folder}")
        return ConsoleReporter(variant.config.train.epochs)

    result = compare(config, key, values, Path(config.train.output_dir), reporter_for)
    print()
    print(markdown_table(result["headers"], result["rows"]), end="")
    print(f"\ncurves: {result['figure']}\ntable: {result['csv']}, {result['markdown']}")
    return 0
