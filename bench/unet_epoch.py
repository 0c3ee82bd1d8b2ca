"""U-Net benchmark: neuralab's in-memory batches against a per-sample Dataset and DataLoader.

Both sides train the `unet` model of the mnist-scenes-unet recipe (widths 16-128, batch norm)
on the same 64x64 mnist-scenes with AdamW, cross-entropy plus Dice and batches of 32. The peer
is the usual PyTorch pattern: a map-style Dataset that turns one uint8 scene and mask into
normalized tensors per item, behind `DataLoader(batch_size=32, shuffle=True)`. neuralab's side
is the recipe's session: normalized once into memory, batches indexed and channels-last.

Each side runs in its own child process, so its peak resident memory is its own. The sides
alternate for `--repeats` rounds and the table shows the median seconds per 1,000 training
scenes. Results: BENCHMARKS.md.

    python bench/unet_epoch.py [--scenes 2000] [--repeats 3] [--json bench/results/unet.json]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import finish_side, machine, run_side
from torch.utils.data import DataLoader, Dataset

from neuralab.config import load_recipe, merge
from neuralab.data import scenes
from neuralab.models import build_model
from neuralab.nn import build_loss, build_optimizer
from neuralab.training import session as sessions

RECIPE = "mnist-scenes-unet"
SCENES_PER_UNIT = 1000


class SceneDataset(Dataset):
    """One normalized scene (1, 64, 64) and its int64 mask (64, 64) per item, converted on access."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.images = images
        self.masks = masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].float().div(255).sub(scenes.MEAN).div(scenes.STD).unsqueeze(0)
        return image, self.masks[index].long()


def run_dataloader(count: int, seed: int, threads: int) -> float:
    """Train one pass over `count` scenes with the per-sample pipeline; return its seconds."""
    torch.set_num_threads(threads)
    config = load_recipe(RECIPE)
    loaded = scenes.load_scenes({"train": count}, val_size=config.data.val_size, val_seed=config.data.val_seed,
                                data_dir=None)
    images, masks = loaded["train"]
    torch.manual_seed(seed)
    model = build_model(config.model.name, scenes.IN_SHAPE, len(scenes.CLASSES), **config.model.options)
    loss_fn = build_loss(config.train.loss, model.head)
    optimizer = build_optimizer(config.optim.optimizer, model.parameters(), lr=config.optim.lr,
                                weight_decay=config.optim.weight_decay)
    loader = DataLoader(SceneDataset(images, masks), batch_size=config.train.batch_size, shuffle=True)
    model.train()
    started = time.perf_counter()
    for batch_images, batch_masks in loader:
        optimizer.zero_grad()
        loss_fn(model(batch_images), batch_masks).backward()
        optimizer.step()
    return time.perf_counter() - started


def run_neuralab(count: int, seed: int, threads: int) -> float:
    """Train one epoch of the recipe's session on `count` scenes; return its seconds."""
    updates = {"data": {"train_scenes": count, "val_scenes": 0}, "train": {"seed": seed, "threads": threads}}
    session = sessions.prepare(merge(load_recipe(RECIPE), updates, source="benchmark"))
    return session.trainer.train_epoch(session.train_loader, 1)[3]


SIDES = {"dataloader": run_dataloader, "neuralab": run_neuralab}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000, help="training scenes per pass (default: 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of both sides (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both sides (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--json", type=Path, default=Path("bench/results/unet.json"), help="where to write results")
    args = parser.parse_args()

    if args.side:
        finish_side({"seconds": SIDES[args.side](args.scenes, args.seed, args.threads)})
        return

    options = ["--scenes", str(args.scenes), "--seed", str(args.seed), "--threads", str(args.threads)]
    rounds = [{side: run_side(__file__, side, options) for side in SIDES} for _ in range(args.repeats)]
    summary = {}
    for side in SIDES:
        seconds = statistics.median(round_[side]["seconds"] for round_ in rounds)
        summary[side] = {"s_per_1k_scenes": seconds / args.scenes * SCENES_PER_UNIT,
                         "peak_rss_mb": max(round_[side]["peak_rss_mb"] for round_ in rounds)}
    results = {
        "machine": machine(threads=args.threads),
        "scenes": args.scenes,
        "repeats": args.repeats,
        "sides": summary,
        "speedup": summary["dataloader"]["s_per_1k_scenes"] / summary["neuralab"]["s_per_1k_scenes"],
        "raw": rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")

    print(f"{'pipeline':<38}{'s / 1k scenes':>14}{'peak RSS':>12}")
    for side, label in (("dataloader", "per-sample Dataset + DataLoader"), ("neuralab", f"neuralab {RECIPE}")):
        print(f"{label:<38}{summary[side]['s_per_1k_scenes']:>14.2f}{summary[side]['peak_rss_mb']:>9.0f} MB")
    print(f"speed-up: {results['speedup']:.2f}x per training scene (median of {args.repeats})")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
