"""Speed of predicting a folder of photo-like digits in one call, against one call per file in a Python loop.

Both sides use the same predictor, loaded once and warmed up on a few files, in the same process,
one after the other. One side calls `predictor.predict(FOLDER)`: batches of 64, with the files
decoded and preprocessed by one worker process per CPU. The other calls
`predictor.predict(path)` for each file in a loop: each file is decoded in this process and
predicted as a batch of one. The files come from bench/photo_digits.py. One run reports the
wall-clock seconds per side, files per second and their ratio. It also reports the CPU seconds of
each side (this process and its worker processes) and the load average, because other jobs on a
shared machine take CPU time from the workers. Result for 1,000 files with the mnist-cnn run, one run each on 2
CPU cores loaded by other jobs (load average 6-7): 5.4x faster with torch's default 2 threads,
1.34x with --threads 1; details in BENCHMARKS.md.

    python bench/predict_folder.py RUN_DIR [--count 1000] [--json bench/results/predict_folder.json]
"""

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished MNIST run directory, e.g. mnist-cnn")
    parser.add_argument("--count", type=int, default=1000, help="number of photo-like digits in the folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of bench/photo_digits.py")
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    predictor = neuralab.load(args.run_dir)
    with tempfile.TemporaryDirectory(prefix="photo-digits-") as folder:
        paths = [path for path, _ in write_photo_digits(Path(folder), args.count, args.seed)]
        for path in paths[:WARM_UP_FILES]:
            predictor.predict(path)

        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        batched = predictor.predict(folder)
        folder_seconds, folder_cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started

        started, cpu_started = time.perf_counter(), _cpu_seconds()
        looped = [predictor.predict(path) for path in paths]
        loop_seconds, loop_cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
        load_after = os.getloadavg()[0]

    mismatches = sum(one.label != other.label for one, other in zip(batched, looped))
    result = {"run": str(args.run_dir), "files": len(paths), "workers": default_workers(len(paths)),
              "folder_seconds": folder_seconds, "loop_seconds": loop_seconds,
              "speed_up": loop_seconds / folder_seconds, "folder_cpu_seconds": folder_cpu,
              "loop_cpu_seconds": loop_cpu, "load_average_1min": [load_before, load_after],
              "label_mismatches": mismatches, "machine": machine(torch.get_num_threads())}
    print(f"{len(paths)} files, {result['workers']} worker processes, {torch.get_num_threads()} torch threads")
    print(f"one call for the folder: {folder_seconds:6.2f} s ({len(paths) / folder_seconds:6.0f} files/s), "
          f"{folder_cpu:6.2f} CPU s")
    print(f"one call per file:       {loop_seconds:6.2f} s ({len(paths) / loop_seconds:6.0f} files/s), "
          f"{loop_cpu:6.2f} CPU s")
    print(f"speed-up {result['speed_up']:.2f}x; predictions that differ between the two: {mismatches}; "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
