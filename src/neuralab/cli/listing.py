"""`neuralab list`: the recipes, models, activations, losses, optimizers and schedulers by name."""

import argparse

from neuralab.config import RECIPES
from neuralab.data.sources import DATASETS
from neuralab.models import MODELS, model_options
from neuralab.nn import ACTIVATIONS, LOSSES, OPTIMIZERS, SCHEDULERS

REGISTRIES = {
    "recipes": RECIPES,
    "models": MODELS,
    "datasets": DATASETS,
    "activations": ACTIVATIONS,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list recipes, models, activations, losses and optimizers",
                                   description="List every name that a configuration or flag can use.")
    parser.add_argument("kind", nargs="?", choices=sorted(REGISTRIES), help="list only this kind (default: all)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        print(f"{kind}:")
        for entry in REGISTRIES[kind].entries():
            print(f"  {entry.name:<18} {entry.description}")
            if kind == "models":
                options = ", ".join(f"{key}={value!r}" for key, value in model_options(entry.name).items())
                print(f"  {'':<18}   options: {options or 'none'}")
        print()
    return 0
