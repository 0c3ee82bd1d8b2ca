"""MLP epoch time against the compute floor: neuralab's training epoch beside a plain PyTorch loop.

One process, one thread, the mnist-mlp-tutorial recipe's data, model and optimizer. Each
repetition runs one epoch of each side in turn:

- neuralab: `Trainer.train_epoch`, as `neuralab train` runs it without a progress bar, which
  computes the MLP's gradients with `MLPStep` (training/mlp_step.py);
- neuralab through autograd: the same, with `MLPStep` switched off;
- plain loop: the same BatchLoader batches, then zero_grad, forward, loss, backward and fused
  Adam's step, with nothing else (no scheduler, accuracy or loss bookkeeping).

Each side trains its own copy of the model. The compute floor is the one of
bench/mlp_tutorial.py: 6 x the model's multiply-accumulates per sample x training samples, at
the measured single-thread matmul rate at the first layer's shape. Reported: the median epoch
of each side over the repetitions, and each as a multiple of the floor. Results: BENCHMARKS.md.

    python bench/mlp_floor_gap.py [--repeat 5] [--json bench/results/mlp_floor_gap.json]
"""

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from common import machine
from mlp_tutorial import matmul_gflops

from neuralab.config import load_recipe, merge
from neuralab.nn import build_optimizer
from neuralab.training import session as sessions
from neuralab.training.devices import count_macs

RECIPE = "mnist-mlp-tutorial"


def plain_epoch(model: torch.nn.Module, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
                loader) -> float:
    """Train one epoch with the fewest PyTorch calls a training loop needs; return its seconds."""
    started = time.perf_counter()
    for images, targets in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), targets)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="epochs per side; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/mlp_floor_gap.json"),
                        help="where to write results")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    torch.set_num_threads(1)

    config = merge(load_recipe(RECIPE), {"train": {"seed": args.seed, "threads": 1}}, source="benchmark")
    session = sessions.prepare(config)
    trainer, loader = session.trainer, session.train_loader
    plain_model = copy.deepcopy(session.model)
    plain_optimizer = build_optimizer(config.optim.optimizer, plain_model.parameters(), lr=config.optim.lr,
                                      momentum=config.optim.momentum, nesterov=config.optim.nesterov,
                                      weight_decay=config.optim.weight_decay, fused=True)

    autograd_trainer = sessions.prepare(config).trainer
    autograd_trainer.mlp_step = None

    neuralab_seconds, autograd_seconds, plain_seconds = [], [], []
    for epoch in range(1, args.repeat + 1):
        neuralab_seconds.append(trainer.train_epoch(loader, epoch)[3])
        autograd_seconds.append(autograd_trainer.train_epoch(loader, epoch)[3])
        plain_seconds.append(plain_epoch(plain_model, trainer.loss_fn, plain_optimizer, loader))

    gflops = matmul_gflops()
    samples = len(session.data.train)
    floor = 6 * count_macs(session.model, session.data.in_shape) * samples / (gflops * 1e9)
    neuralab_epoch = statistics.median(neuralab_seconds)
    autograd_epoch = statistics.median(autograd_seconds)
    plain_epoch_seconds = statistics.median(plain_seconds)
    results = {"machine": machine(threads=1), "recipe": RECIPE, "samples": samples, "repeat": args.repeat,
               "matmul_gflops_1thread": gflops, "floor_s_per_epoch": floor,
               "neuralab_epoch_s": neuralab_epoch, "neuralab_autograd_epoch_s": autograd_epoch,
               "plain_loop_epoch_s": plain_epoch_seconds, "neuralab_over_floor": neuralab_epoch / floor,
               "neuralab_autograd_over_floor": autograd_epoch / floor,
               "plain_loop_over_floor": plain_epoch_seconds / floor,
               "raw": {"neuralab": neuralab_seconds, "neuralab_autograd": autograd_seconds,
                       "plain_loop": plain_seconds}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")

    print(f"compute floor: {gflops:.1f} GFLOP/s on 1 thread -> {floor:.3f} s per {samples}-sample epoch")
    print(f"{'side':<26}{'epoch (median)':>16}{'x floor':>10}")
    print(f"{'neuralab train_epoch':<26}{neuralab_epoch:>14.3f} s{neuralab_epoch / floor:>9.2f}x")
    print(f"{'  through autograd':<26}{autograd_epoch:>14.3f} s{autograd_epoch / floor:>9.2f}x")
    print(f"{'plain PyTorch loop':<26}{plain_epoch_seconds:>14.3f} s{plain_epoch_seconds / floor:>9.2f}x")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
