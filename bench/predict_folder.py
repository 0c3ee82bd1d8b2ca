"""Speed of predicting a folder of photo-like digits in one call, against one call per file in a Python loop.

Both sides use the same predictor, loaded once and warmed up on a few files, in the same process.
One side calls `predictor.predict(FOLDER)`: batches of 64, with the files decoded and
preprocessed by one worker process per CPU while the model runs on one thread. The other calls
`predictor.predict(path)` for each file in a loop: each file is decoded in this process and
predicted as a batch of one. The files come from bench/photo_digits.py. Each repetition runs
both sides, one after the other, and the report gives the median over the repetitions of the
wall-clock seconds per side, files per second and the ratio. It also reports the CPU seconds of
each side (this process and its worker processes) and the load average, because other jobs on a
shared machine take CPU time from the workers. Results are in BENCHMARKS.md.

    python bench/predict_folder.py RUN_DIR [--count 1000] [--repeat 5] [--json bench/results/predict_folder.json]
"""

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import machine
from photo_digits import write_photo_digits

import neuralab
from neuralab.predict.inputs import default_workers

WARM_UP_FILES = 8


def _cpu_seconds() -> float:
    """Return the CPU seconds used so far by this process and by its finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(work: Callable[[], Any]) -> tuple[Any, tuple[float, float]]:
    """Return what `work()` returns and its (wall-clock seconds, CPU seconds)."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    result = work()
    return result, (time.perf_counter() - started, _cpu_seconds() - cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished MNIST run directory, e.g. mnist-cnn")
    parser.add_argument("--count", type=int, default=1000, help="number of photo-like digits in the folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of bench/photo_digits.py")
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of both sides; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")

    predictor = neuralab.load(args.run_dir)
    folder_runs, loop_runs = [], []
    with tempfile.TemporaryDirectory(prefix="photo-digits-") as folder:
        paths = [path for path, _ in write_photo_digits(Path(folder), args.count, args.seed)]
        for path in paths[:WARM_UP_FILES]:
            predictor.predict(path)

        load_before = os.getloadavg()[0]
        for _ in range(args.repeat):
            batched, seconds = _timed(lambda: predictor.predict(folder))
            folder_runs.append(seconds)
            looped, seconds = _timed(lambda: [predictor.predict(path) for path in paths])
            loop_runs.append(seconds)
        load_after = os.getloadavg()[0]

    folder_seconds = statistics.median(wall for wall, _ in folder_runs)
    loop_seconds = statistics.median(wall for wall, _ in loop_runs)
    folder_cpu = statistics.median(cpu for _, cpu in folder_runs)
    loop_cpu = statistics.median(cpu for _, cpu in loop_runs)
    ratios = [loop[0] / batch[0] for batch, loop in zip(folder_runs, loop_runs)]
    mismatches = sum(one.label != other.label for one, other in zip(batched, looped))
    result = {"run": str(args.run_dir), "files": len(paths), "workers": default_workers(len(paths)),
              "folder_seconds": folder_seconds, "loop_seconds": loop_seconds,
              "speed_up": statistics.median(ratios), "speed_ups": ratios, "repeat": args.repeat,
              "folder_cpu_seconds": folder_cpu,
              "loop_cpu_seconds": loop_cpu, "load_average_1min": [load_before, load_after],
              "label_mismatches": mismatches, "machine": machine(torch.get_num_threads())}
    print(f"{len(paths)} files, {result['workers']} worker processes, {torch.get_num_threads()} torch threads, "
          f"median of {args.repeat} repetitions")
    print(f"one call for the folder: {folder_seconds:6.2f} s ({len(paths) / folder_seconds:6.0f} files/s), "
          f"{folder_cpu:6.2f} CPU s")
    print(f"one call per file:       {loop_seconds:6.2f} s ({len(paths) / loop_seconds:6.0f} files/s), "
          f"{loop_cpu:6.2f} CPU s")
    per_repetition = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    print(f"speed-up {result['speed_up']:.2f}x (each repetition: {per_repetition}); predictions that differ between "
          f"the two: {mismatches}; load average {load_before:.1f} before, {load_after:.1f} after")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
