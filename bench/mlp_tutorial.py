"""MLP benchmark: neuralab's mnist-mlp-tutorial against the classic tutorial's own pipeline.

Both sides train 784-128-64-10 (ReLU, log-softmax, NLL, Adam lr 0.003, batch 64) on one
thread, each in its own process, one after the other. The tutorial side is torchvision's
`datasets.MNIST` with `ToTensor` and `Normalize((0.5,), (0.5,))` behind
`DataLoader(batch_size=64, shuffle=True)`. Reported: seconds per 10,000 training samples
(median over the epochs), their ratio, test accuracy of each, the compute floor (the
model's training FLOPs at the measured single-thread matmul rate), and the training time
and accuracy of the default recipe mnist-mlp, and the peak resident memory of each process. Results: BENCHMARKS.md.

    python bench/mlp_tutorial.py [--epochs 15] [--json bench/results/mlp.json]
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import finish_side, machine, run_side, tutorial_layout
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from neuralab.config import load_recipe, merge
from neuralab.data.batches import BatchLoader
from neuralab.training import session as sessions
from neuralab.training.devices import count_macs

SAMPLES_PER_UNIT = 10_000


def tutorial_model() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
                         nn.LogSoftmax(dim=1))


def run_tutorial(root: Path, epochs: int, seed: int) -> dict:
    """Train the tutorial's pipeline; return per-epoch seconds, samples per epoch and test accuracy."""
    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_set = datasets.MNIST(root, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(root, train=False, download=False, transform=transform)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    model = tutorial_model()
    criterion = nn.NLLLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)

    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for images, labels in train_loader:
            images = images.view(images.shape[0], -1)  # (B, 1, 28, 28) -> (B, 784)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)

    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(test_set, batch_size=1000):
            correct += (model(images.view(images.shape[0], -1)).argmax(dim=1) == labels).sum().item()
    return {"epoch_seconds": seconds, "samples": len(train_set), "test_accuracy": correct / len(test_set)}


def run_neuralab(recipe: str, epochs: int | None, seed: int) -> dict:
    """Train a neuralab recipe through its session API; return per-epoch seconds and test accuracy."""
    updates = {"train": {"seed": seed, "threads": 1, **({"epochs": epochs} if epochs else {})}}
    config = merge(load_recipe(recipe), updates, source="benchmark")
    session = sessions.prepare(config)
    seconds = []
    for epoch in range(1, config.train.epochs + 1):
        seconds.append(session.trainer.train_epoch(session.train_loader, epoch)[3])
    test_loader = BatchLoader(session.test.images, session.test.targets, 1000, shuffle=False)
    result = session.trainer.evaluate(test_loader)
    macs = count_macs(session.model, session.data.in_shape)
    return {"epoch_seconds": seconds, "samples": len(session.data.train), "test_accuracy": result.accuracy,
            "macs_per_sample": macs}


def matmul_gflops(repeats: int = 2000) -> float:
    """Return the single-thread float32 matmul rate at the MLP's first-layer shape, 64x784 by 784x128."""
    left, right = torch.randn(64, 784), torch.randn(784, 128)
    for _ in range(50):
        left @ right
    started = time.perf_counter()
    for _ in range(repeats):
        left @ right
    return 2 * 64 * 784 * 128 * repeats / (time.perf_counter() - started) / 1e9


def per_unit(result: dict) -> float:
    """Median seconds per 10,000 training samples."""
    return statistics.median(result["epoch_seconds"]) / result["samples"] * SAMPLES_PER_UNIT


def run_tutorial_side(epochs: int, seed: int) -> dict:
    """Run the tutorial side on a temporary copy of MNIST in torchvision's layout."""
    with tempfile.TemporaryDirectory() as root:
        tutorial_layout(Path(root))
        return run_tutorial(Path(root), epochs, seed)


# Each side runs in its own process; "mnist-mlp" trains the default recipe for its own epochs.
SIDES = {
    "tutorial": run_tutorial_side,
    "mnist-mlp-tutorial": lambda epochs, seed: run_neuralab("mnist-mlp-tutorial", epochs, seed),
    "mnist-mlp": lambda epochs, seed: run_neuralab("mnist-mlp", None, seed),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="epochs per side (default: 15, the tutorial's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--json", type=Path, default=Path("bench/results/mlp.json"), help="where to write results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.side:
        finish_side(SIDES[args.side](args.epochs, args.seed))
        return

    options = ["--epochs", str(args.epochs), "--seed", str(args.seed)]
    tutorial, ours, default = (run_side(__file__, side, options) for side in SIDES)
    gflops = matmul_gflops()
    floor = 6 * ours["macs_per_sample"] * ours["samples"] / (gflops * 1e9)

    results = {
        "machine": machine(threads=1),
        "epochs": args.epochs,
        "tutorial_s_per_10k": per_unit(tutorial),
        "neuralab_s_per_10k": per_unit(ours),
        "speedup": per_unit(tutorial) / per_unit(ours),
        "tutorial_test_accuracy": tutorial["test_accuracy"],
        "neuralab_tutorial_test_accuracy": ours["test_accuracy"],
        "matmul_gflops_1thread": gflops,
        "floor_s_per_epoch": floor,
        "neuralab_epoch_s": statistics.median(ours["epoch_seconds"]),
        "percent_of_floor": 100 * floor / statistics.median(ours["epoch_seconds"]),
        "mnist_mlp_train_s": sum(default["epoch_seconds"]),
        "mnist_mlp_tutorial_train_s": sum(ours["epoch_seconds"]),
        "mnist_mlp_test_accuracy": default["test_accuracy"],
        "peak_rss_mb": {"tutorial": tutorial["peak_rss_mb"], "mnist-mlp-tutorial": ours["peak_rss_mb"],
                        "mnist-mlp": default["peak_rss_mb"]},
        "raw": {"tutorial": tutorial, "mnist-mlp-tutorial": ours, "mnist-mlp": default},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")

    print(f"{'pipeline':<34}{'s / 10k samples':>16}{'test acc':>10}{'peak RSS':>11}")
    print(f"{'tutorial (DataLoader, ToTensor)':<34}{results['tutorial_s_per_10k']:>16.3f}"
          f"{100 * tutorial['test_accuracy']:>9.2f}%{tutorial['peak_rss_mb']:>8.0f} MB")
    print(f"{'neuralab mnist-mlp-tutorial':<34}{results['neuralab_s_per_10k']:>16.3f}"
          f"{100 * ours['test_accuracy']:>9.2f}%{ours['peak_rss_mb']:>8.0f} MB")
    print(f"speed-up: {results['speedup']:.1f}x per training sample")
    print(f"compute floor: {gflops:.1f} GFLOP/s on 1 thread -> {floor:.2f} s per {ours['samples']}-sample epoch; "
          f"neuralab epoch {results['neuralab_epoch_s']:.2f} s ({results['percent_of_floor']:.0f}% of floor speed)")
    print(f"training time: mnist-mlp {results['mnist_mlp_train_s']:.1f} s ({100 * default['test_accuracy']:.2f}%), "
          f"mnist-mlp-tutorial {results['mnist_mlp_tutorial_train_s']:.1f} s ({100 * ours['test_accuracy']:.2f}%)")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
