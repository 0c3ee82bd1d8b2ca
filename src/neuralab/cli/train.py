"""`neuralab train`: resolve a configuration, train, checkpoint every epoch and print the test numbers."""

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from neuralab.cli.progress import ConsoleReporter
from neuralab.config import DEFAULT_RECIPE, SECTIONS, RunConfig, load_recipe, load_yaml, merge, to_yaml
from neuralab.inspect.recorded_fit import fit_recorded
from neuralab.inspect.report import write_report
from neuralab.inspect.tensorboard import summary_writer_class
from neuralab.training import distributed
from neuralab.training import session as sessions
from neuralab.training.checkpoint import load_checkpoint
from neuralab.training.engine import NonFiniteLossError
from neuralab.training.runs import RunDir

# Model options that have their own flag; any other goes through --model-option KEY=VALUE.
MODEL_FLAGS = {
    "hidden_sizes": ("--hidden-sizes", "hidden layer widths, comma-separated, e.g. 256,128 (mlp)"),
    "activation": ("--activation", "hidden-layer activation, e.g. relu, sigmoid, tanh (mlp)"),
    "dropout": ("--dropout", "dropout probability after each hidden layer (mlp)"),
    "head": ("--head", "output head: logits, log_softmax, softmax or sigmoid"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a recipe and report test accuracy",
        description="Train a recipe (default: mnist-mlp). Values come from the recipe, then --config, then "
        "flags. Every run writes runs/<recipe>-<time>/ with its configuration, metrics, checkpoint, weights "
        "and summary.",
    )
    parser.add_argument("recipe", nargs="?", help=f"recipe name, see `neuralab list recipes` (default: {DEFAULT_RECIPE})")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint; with --epochs N, to N epochs in all")
    add_config_flags(parser)
    parser.set_defaults(run=run)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add --config and one flag per configuration field; `flag_updates` reads them back."""
    parser.add_argument("--config", type=Path, help="YAML file with sections model, data, optim, train")
    parser.add_argument("--model", dest="model.name", help="registered model name (see `neuralab list models`)")
    for key, (flag, help_text) in MODEL_FLAGS.items():
        parser.add_argument(flag, dest=f"model.options.{key}", help=help_text)
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="any model option, value in YAML syntax, e.g. --model-option channels=[16,32]")
    for section, cls in SECTIONS.items():
        if section == "model":
            continue
        _add_section_flags(parser, section, cls)


def _add_section_flags(parser: argparse.ArgumentParser, section: str, cls: type) -> None:
    group = parser.add_argument_group(f"{section} options")
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        flag = "--" + item.name.replace("_", "-")
        # A None default means "unset", which each help text explains in its own words.
        recipe = "a recipe may set it" if item.default is None else \
            f"built-in default: {item.default}; a recipe may set another"
        help_text = f"{item.metadata['help']} ({recipe}, see --print-config)"
        dest = f"{section}.{item.name}"
        kind = hints[item.name]
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        group.add_argument(flag, dest=dest, type=base, metavar=base.__name__.upper(), help=help_text)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(size) for size in text.split(",")]
    except ValueError:
        raise ValueError(f"--hidden-sizes expects comma-separated positive integers, e.g. 128,64; got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise ValueError(f"--hidden-sizes expects positive layer widths, e.g. 128,64; got {text!r}")
    return sizes


def flag_updates(args: argparse.Namespace) -> dict[str, Any]:
    """Return the nested configuration updates given as flags."""
    updates: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if value is None or "." not in dest:
            continue
        section, _, key = dest.partition(".")
        if key.startswith("options."):
            option = key.removeprefix("options.")
            value = _parse_sizes(value) if option == "hidden_sizes" else _parse_value(value)
            updates.setdefault("model", {}).setdefault("options", {})[option] = value
        else:
            updates.setdefault(section, {})[key] = value
    for assignment in args.model_option:
        key, sign, value = assignment.partition("=")
        if not sign or not key:
            raise ValueError(f"--model-option expects KEY=VALUE, got {assignment!r}")
        updates.setdefault("model", {}).setdefault("options", {})[key] = _parse_value(value)
    return updates


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Return the configuration: recipe, then --config, then flags (or the resumed run's, then --epochs)."""
    if args.resume is not None:
        return _resume_config(args)
    content = load_yaml(args.config) if args.config is not None else {}
    if args.recipe:
        content.pop("recipe", None)  # a recipe named on the command line wins over the file's
    config = load_recipe(args.recipe or content.get("recipe") or DEFAULT_RECIPE)
    config = merge(config, content, source=str(args.config))
    config = merge(config, flag_updates(args), source="command line")
    if config.data.data_dir:
        # Stored absolute, so that evaluate and resume find the data from any working directory.
        absolute = str(Path(config.data.data_dir).expanduser().absolute())
        config = merge(config, {"data": {"data_dir": absolute}}, source="command line")
    return config


def _resume_config(args: argparse.Namespace) -> RunConfig:
    updates = flag_updates(args)
    allowed = {"train": {"epochs", "threads", "device", "compile", "report", "tensorboard"}}
    for section, values in updates.items():
        extra = set(values) - allowed.get(section, set())
        if extra:
            raise ValueError("--resume continues a run with its saved configuration; only --epochs, --threads, "
                             "--device, --compile, --report and --tensorboard may change, "
                             f"got {', '.join(sorted(extra))}")
    if args.recipe or args.config:
        raise ValueError("--resume takes its recipe and configuration from the run directory; "
                         "drop the recipe name and --config")
    config = RunDir.open(args.resume).read_config()
    return merge(config, updates, source="command line")


def run(args: argparse.Namespace) -> int:
    """Train in this process; under torchrun, as one rank of several, of which only rank 0 prints and writes."""
    context = distributed.from_environment()
    try:
        with _quiet_unless_main(context), distributed.process_group(context):
            try:
                # The session lives in _run's frame only, so it is freed before the process group is destroyed.
                return _run(args, context)
            except _user_errors():
                if context.enabled:
                    # Every rank stops on the same error. torchrun sends SIGTERM to the others as soon as the
                    # first one exits, so ignoring it lets each rank finish its exit with status 2.
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                raise
    except _user_errors():
        if context.is_main:
            raise  # the command prints the error and exits with status 2
        return 2


def _run(args: argparse.Namespace, context: distributed.DistributedContext) -> int:
    # Under torchrun every rank resolves and checks the same configuration, and an error stops all ranks together.
    config = distributed.run_on_every_rank(lambda: resolve_config(args), context)
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    session = distributed.run_on_every_rank(lambda: _prepare(args, config, context), context)
    if args.resume is not None:
        run_dir = RunDir.open(args.resume)
        finished = run_dir.weights_path.is_file() and run_dir.summary_path.is_file()
        if session.start_epoch > config.train.epochs or (session.start_epoch == config.train.epochs and finished):
            trained = "1 epoch" if session.start_epoch == 1 else f"{session.start_epoch} epochs"
            print(f"{run_dir.path}: already trained for {trained}; "
                  f"pass --epochs N with N > {session.start_epoch} to train further")
            return 0
        if context.is_main:
            run_dir.write_config(config)
        if session.start_epoch == config.train.epochs:
            print(f"{run_dir.path}: training finished at epoch {config.train.epochs}; writing the missing weights "
                  "and summary")
        else:
            print(f"resuming {run_dir.path} at epoch {session.start_epoch + 1} of {config.train.epochs}")
    else:
        run_dir = distributed.run_on_main(lambda: _create_run_dir(config), context)
        processes = f" in each of {context.world_size} processes" if context.enabled else ""
        print(f"training {config.recipe} ({config.model.name}) on {config.data.dataset}: "
              f"{len(session.data.train)} training, {len(session.data.val or [])} validation, "
              f"{len(session.test or [])} test images; {session.threads} thread(s) on {session.device}{processes}; "
              f"run {run_dir.path}")
    return _train(session, run_dir)


def _prepare(args: argparse.Namespace, config: RunConfig, context: distributed.DistributedContext) -> sessions.Session:
    """Build the session, and restore the checkpoint when resuming. Write nothing."""
    session = sessions.prepare(config, context)
    if config.train.tensorboard:
        summary_writer_class()  # raises before the run directory is created when tensorboard is missing
    if args.resume is not None:
        sessions.restore(session, RunDir.open(args.resume))
    return session


def _create_run_dir(config: RunConfig) -> RunDir:
    run_dir = RunDir.create(Path(config.train.output_dir), config.recipe)
    run_dir.write_config(config)
    return run_dir


@contextlib.contextmanager
def _quiet_unless_main(context: distributed.DistributedContext) -> Iterator[None]:
    """Discard standard output on every rank but 0, so a distributed run prints each line once."""
    if context.is_main:
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _user_errors() -> tuple[type[Exception], ...]:
    from neuralab.cli import USER_ERRORS  # imported here: neuralab.cli imports this module

    return USER_ERRORS


def _train(session: sessions.Session, run_dir: RunDir) -> int:
    is_main = session.context.is_main
    reporter = ConsoleReporter(session.config.train.epochs, bar=None if is_main else False)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = fit_recorded(session, run_dir, reporter)
    except KeyboardInterrupt:
        reporter.close()
        if is_main:
            _print_interrupted(run_dir)
        return 130
    except (NonFiniteLossError, FloatingPointError) as error:
        reporter.close()
        if is_main:
            print(f"neuralab train: error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    epochs = "1 epoch" if summary["epochs"] == 1 else f"{summary['epochs']} epochs"
    print(f"{_test_result(summary)} after {epochs}, "
          f"{summary['train_seconds']:.1f}s of training; run saved to {run_dir.path}")
    if session.config.train.report and is_main:
        print(f"report: {write_report(run_dir.path)}")
    return 0


def _test_result(summary: dict[str, Any]) -> str:
    """Return the summary's headline test numbers: accuracy, and mean IoU for segmentation."""
    if summary["test_samples"] == 0:
        return summary.get("test_note", "no test set")
    result = (f"test accuracy {100 * summary['test_accuracy']:.2f}% (loss {summary['test_loss']:.4f}) on "
              f"{summary['test_samples']} test images")
    if summary.get("task") == "segmentation":
        iou = summary["mean_iou_without_background"]
        result += f", mean IoU without background {'n/a' if iou is None else f'{iou:.4f}'}"
    return result


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_interrupted(run_dir: RunDir) -> None:
    if not run_dir.checkpoint_path.is_file():
        print(f"\ninterrupted before the first epoch finished; {run_dir.path} contains no checkpoint", file=sys.stderr)
        return
    epoch = load_checkpoint(run_dir.checkpoint_path)["epoch"]
    print(f"\ninterrupted; the checkpoint after epoch {epoch} is kept in {run_dir.path}. Resume with:\n"
          f"  neuralab train --resume {shlex.quote(str(run_dir.path))}", file=sys.stderr)
