"""CNN benchmark: training time to 99.0% MNIST test accuracy, a neuralab CNN recipe against pytorch/examples.

The peer is the network of pytorch/examples `mnist/main.py` with that script's defaults.
Its layers are conv 1-32 3x3, ReLU, conv 32-64 3x3, ReLU, 2x2 max-pool, dropout 0.25, linear
9216-128, ReLU, dropout 0.5, linear 128-10 and log-softmax. It trains with NLL loss and
Adadelta (lr 1.0, StepLR gamma 0.7 per epoch) on batches of 64 from a torchvision DataLoader
with `Normalize((0.1307,), (0.3081,))`, for 14 epochs at most. neuralab's side is a recipe
as shipped, by default `mnist-cnn-fast` (mnist-cnn on a 3-epoch schedule). Both sides check
the full test set after every epoch and stop at the first epoch at or above 99.0%.
Evaluation time is excluded on both sides. Both use the same thread count, each in its own
process, one after the other. Results: BENCHMARKS.md.

    python bench/cnn_time_to_99.py [--threads 2] [--json bench/results/cnn.json]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import finish_side, machine, run_side, tutorial_layout
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from neuralab.config import load_recipe, merge
from neuralab.data.batches import BatchLoader
from neuralab.training import session as sessions

TARGET = 0.99


class ExamplesNet(nn.Module):
    """The network of pytorch/examples mnist/main.py, written out from its description."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def run_examples(root: Path, max_epochs: int, seed: int) -> dict:
    """Train the pytorch/examples pipeline until 99% test accuracy; return the per-epoch record."""
    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_loader = DataLoader(datasets.MNIST(root, train=True, transform=transform), batch_size=64, shuffle=True)
    test_loader = DataLoader(datasets.MNIST(root, train=False, transform=transform), batch_size=1000)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    epochs = []
    for _ in range(max_epochs):
        model.train()
        started = time.perf_counter()
        for images, labels in train_loader:
            optimizer.zero_grad()
            F.nll_loss(model(images), labels).backward()
            optimizer.step()
        scheduler.step()
        seconds = time.perf_counter() - started

        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (model(images).argmax(dim=1) == labels).sum().item()
        epochs.append({"train_seconds": seconds, "test_accuracy": correct / len(test_loader.dataset)})
        if epochs[-1]["test_accuracy"] >= TARGET:
            break
    return {"epochs": epochs}


def run_neuralab(recipe: str, seed: int, threads: int, max_epochs: int) -> dict:
    """Train a neuralab recipe until 99% test accuracy, or its last epoch; return the per-epoch record.

    The schedule spans the recipe's epochs, and `max_epochs` only stops the run sooner.
    """
    config = merge(load_recipe(recipe), {"train": {"seed": seed, "threads": threads}}, source="benchmark")
    session = sessions.prepare(config)
    test_loader = BatchLoader(session.test.images, session.test.targets, 1000, shuffle=False)
    epochs = []
    for epoch in range(1, min(config.train.epochs, max_epochs) + 1):
        seconds = session.trainer.train_epoch(session.train_loader, epoch)[3]
        epochs.append({"train_seconds": seconds, "test_accuracy": session.trainer.evaluate(test_loader).accuracy})
        if epochs[-1]["test_accuracy"] >= TARGET:
            break
    return {"epochs": epochs}


def time_to_target(record: dict) -> float | None:
    """Return the training seconds until the first epoch at or above the target, or None if never reached."""
    if record["epochs"][-1]["test_accuracy"] < TARGET:
        return None
    return sum(epoch["train_seconds"] for epoch in record["epochs"])


def describe(name: str, record: dict) -> str:
    seconds = time_to_target(record)
    reached = f"{seconds:8.1f} s" if seconds is not None else "not reached"
    last = record["epochs"][-1]
    return (f"{name:<36}{reached:>14}{len(record['epochs']):>8}{100 * last['test_accuracy']:>11.2f}%"
            f"{record['peak_rss_mb']:>8.0f} MB")


def run_examples_side(max_epochs: int, seed: int, threads: int) -> dict:
    """Run the examples side on a temporary copy of MNIST in torchvision's layout."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as root:
        tutorial_layout(Path(root))
        return run_examples(Path(root), max_epochs, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both sides (default: 2)")
    parser.add_argument("--max-epochs", type=int, default=14, help="maximum epochs of either side (default: 14)")
    parser.add_argument("--recipe", default="mnist-cnn-fast", help="neuralab recipe (default: mnist-cnn-fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=("examples", "neuralab"), help=argparse.SUPPRESS)  # set in child processes
    parser.add_argument("--json", type=Path, default=Path("bench/results/cnn.json"), help="where to write results")
    args = parser.parse_args()

    if args.side == "examples":
        finish_side(run_examples_side(args.max_epochs, args.seed, args.threads))
        return
    if args.side == "neuralab":
        finish_side(run_neuralab(args.recipe, args.seed, args.threads, args.max_epochs))
        return

    options = ["--threads", str(args.threads), "--max-epochs", str(args.max_epochs), "--recipe", args.recipe,
               "--seed", str(args.seed)]
    ours = run_side(__file__, "neuralab", options)
    examples = run_side(__file__, "examples", options)

    ours_s, examples_s = time_to_target(ours), time_to_target(examples)
    results = {
        "machine": machine(threads=args.threads),
        "target": TARGET,
        "recipe": args.recipe,
        "neuralab_seconds_to_target": ours_s,
        "examples_seconds_to_target": examples_s,
        "speedup": examples_s / ours_s if ours_s and examples_s else None,
        "neuralab_peak_rss_mb": ours["peak_rss_mb"],
        "examples_peak_rss_mb": examples["peak_rss_mb"],
        "raw": {"neuralab": ours, "examples": examples},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")

    print(f"{'pipeline':<36}{'time to 99%':>14}{'epochs':>8}{'test acc':>12}{'peak RSS':>11}")
    print(describe("pytorch/examples mnist (DataLoader)", examples))
    print(describe(f"neuralab {args.recipe}", ours))
    if results["speedup"] is not None:
        print(f"speed-up: {results['speedup']:.1f}x sooner to {100 * TARGET:.0f}% (training time only)")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
