"""GPU check: an MLP epoch, the CNN's time to 99% and a U-Net epoch, with bf16 autocast and torch.compile.

Trains neuralab's recipes mnist-mlp, mnist-cnn and mnist-scenes-unet on one CUDA GPU with
`--precision bf16 --compile`, using only the packages already installed: neuralab is imported
from this checkout's src/, and MNIST ships inside it. When a recipe fails with compilation or
bf16, it is trained again without compilation, then in fp32, and the table shows which settings ran.
The CNN checks the full test set after every epoch and stops at 99.0%. Evaluation time is
excluded, and the first epoch of each recipe includes compilation. No epoch starts after
--budget-s seconds (default 540), so the whole check stays near 10 minutes. Data preparation
and the epoch in progress come on top of that budget. It prints
the versions and a table, and writes JSON. No GPU result is recorded yet: the script has run
only with --dry-run on CPU (2 cores, PyTorch 2.14).

    python3 bench/gpu_check.py [--json bench/results/gpu.json] [--budget-s 540]
    python3 bench/gpu_check.py --dry-run --device cpu   # tiny subsets, one epoch each: checks the script
"""

import argparse
import importlib.metadata
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# These imports need the sys.path entry above.
from neuralab.config import load_recipe, merge
from neuralab.data.prepare import build_loader
from neuralab.training import session as sessions

TARGET = 0.99
# (stage, recipe, max epochs, whether to stop at TARGET test accuracy)
STAGES = [
    ("mlp_epoch", "mnist-mlp", 3, False),
    ("cnn_time_to_99", "mnist-cnn", 10, True),
    ("unet_epoch", "mnist-scenes-unet", 2, False),
]
# Tiny data for --dry-run: enough batches for the one_cycle schedule of every recipe.
DRY_RUN_DATA = {"train_subset": 1500, "val_size": 500, "test_subset": 200, "train_scenes": 128, "val_scenes": 32}


def versions() -> dict:
    """Return the software and hardware that the numbers come from."""
    found = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
             "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    for package in ("torchvision", "triton"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
        found["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        found["cudnn"] = torch.backends.cudnn.version()
        found["bf16_supported"] = torch.cuda.is_bf16_supported()
    return found


def attempts(device: str, precision: str, compile_model: bool) -> list[dict]:
    """Return the settings to try in order: as requested, then without compilation, then fp32."""
    tries = [{"device": device, "precision": precision, "compile": compile_model}]
    if compile_model:
        tries.append({"device": device, "precision": precision, "compile": False})
    if precision != "fp32":
        tries.append({"device": device, "precision": "fp32", "compile": False})
    return tries


def train_timed(recipe: str, settings: dict, max_epochs: int, stop_at_target: bool, deadline: float,
                dry_run: bool) -> dict:
    """Train `recipe` with `settings`, timing each epoch, and return the per-epoch record."""
    updates = {"train": dict(settings)}
    if dry_run:
        updates["data"] = {key: value for key, value in DRY_RUN_DATA.items()
                           if key in ("train_scenes", "val_scenes") or "scenes" not in recipe}
    config = merge(load_recipe(recipe), updates, source="gpu check")
    session = sessions.prepare(config)
    test_loader = build_loader(session.test, config.train.eval_batch_size, shuffle=False)
    if session.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(session.device)

    epochs = []
    for epoch in range(1, min(max_epochs, config.train.epochs) + 1):
        seconds = session.trainer.train_epoch(session.train_loader, epoch)[3]  # ends with a loss.item() sync
        row = {"epoch": epoch, "train_seconds": seconds}
        if stop_at_target:
            row["test_accuracy"] = session.trainer.evaluate(test_loader).accuracy
        epochs.append(row)
        print(f"  {recipe} epoch {epoch}: {seconds:.2f} s" +
              (f", test accuracy {100 * row['test_accuracy']:.2f}%" if stop_at_target else ""), flush=True)
        if (stop_at_target and row["test_accuracy"] >= TARGET) or time.monotonic() > deadline or dry_run:
            break

    peak_mb = torch.cuda.max_memory_allocated(session.device) / 2**20 if session.device.type == "cuda" else None
    return {"settings": settings, "epochs": epochs, "peak_gpu_memory_mb": peak_mb}


def run_stage(recipe: str, max_epochs: int, stop_at_target: bool, args: argparse.Namespace,
              deadline: float) -> dict:
    """Train `recipe` with the first settings that work; return its record with every failed attempt."""
    failures = []
    for settings in attempts(args.device, args.precision, not args.no_compile):
        try:
            record = train_timed(recipe, settings, max_epochs, stop_at_target, deadline, args.dry_run)
            return {**record, "failed_attempts": failures}
        except Exception as error:  # noqa: BLE001  (a missing compiler, Triton or bf16 support fails here)
            message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            print(f"  {recipe} with {settings} failed: {message}", file=sys.stderr, flush=True)
            traceback.print_exc(limit=3, file=sys.stderr)
            failures.append({"settings": settings, "error": message})
            torch._dynamo.reset()  # drop compiled code that a failed attempt left behind
    return {"settings": None, "epochs": [], "peak_gpu_memory_mb": None, "failed_attempts": failures}


def summarize(stage: str, record: dict) -> dict:
    """Return the headline numbers of a stage: its first epoch, later epochs, and time to target."""
    epochs = record["epochs"]
    if not epochs:
        return {"result": "failed"}
    seconds = [row["train_seconds"] for row in epochs]
    summary = {"first_epoch_s": seconds[0], "later_epoch_median_s": statistics.median(seconds[1:]) if
               len(seconds) > 1 else None, "epochs_run": len(epochs)}
    if stage == "cnn_time_to_99":
        reached = epochs[-1]["test_accuracy"] >= TARGET
        summary["time_to_99_s"] = sum(seconds) if reached else None
        summary["final_test_accuracy"] = epochs[-1]["test_accuracy"]
    return summary


def print_table(results: dict) -> None:
    print(f"\n{'stage':<16}{'settings':<28}{'1st epoch':>11}{'later':>9}{'to 99%':>9}{'epochs':>8}{'GPU MB':>9}")
    for stage, record in results["stages"].items():
        summary = record["summary"]
        settings = record["settings"]
        label = "failed" if settings is None else \
            f"{settings['device']} {settings['precision']}{' compile' if settings['compile'] else ''}"

        def cell(value: float | None, width: int) -> str:
            return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"

        print(f"{stage:<16}{label:<28}{cell(summary.get('first_epoch_s'), 11)}"
              f"{cell(summary.get('later_epoch_median_s'), 9)}{cell(summary.get('time_to_99_s'), 9)}"
              f"{summary.get('epochs_run', 0):>8}{cell(record['peak_gpu_memory_mb'], 9)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device to train on (default: cuda)")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision (default: bf16)")
    parser.add_argument("--no-compile", action="store_true", help="train without torch.compile")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="seconds after which no new epoch starts (default: 540)")
    parser.add_argument("--dry-run", action="store_true",
                        help="train tiny subsets for one epoch each, to check the script on any machine")
    parser.add_argument("--json", type=Path, default=Path("bench/results/gpu.json"), help="where to write results")
    args = parser.parse_args()

    found = versions()
    print(json.dumps(found, indent=2), flush=True)
    deadline = time.monotonic() + args.budget_s
    results = {"machine": found, "dry_run": args.dry_run, "target": TARGET, "stages": {}}
    for stage, recipe, max_epochs, stop_at_target in STAGES:
        print(f"{stage}: {recipe}", flush=True)
        record = run_stage(recipe, max_epochs, stop_at_target, args, deadline)
        results["stages"][stage] = {**record, "recipe": recipe, "summary": summarize(stage, record)}

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    print(f"results written to {args.json}")
    failed = any(record["settings"] is None for record in results["stages"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
