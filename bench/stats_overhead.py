"""Overhead of layer-statistics recording: mnist-mlp epochs with and without a StatsRecorder.

Two sessions of the mnist-mlp recipe (all 55,000 training images, batch 256, 215 steps per
epoch) train in the same process, one epoch each in turn, so machine noise hits both alike.
Reported, for each sampling interval given: the median epoch time of each side and their ratio,
in wall-clock seconds and in CPU seconds of this process. On a shared machine the CPU time is the
steadier of the two, because waiting for other programs does not count in it.
Result on 2 CPU cores (AMD EPYC, torch 2.14.1), 8 epochs each: see BENCHMARKS.md.

    python bench/stats_overhead.py [--epochs 6] [--every 10] [--json bench/results/stats_overhead.json]
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import machine

from neuralab.config import load_recipe, merge
from neuralab.inspect.recorder import StatsRecorder
from neuralab.training import session as sessions
from neuralab.training.runs import RunDir


def epoch_seconds(session: sessions.Session, epoch: int, reporter=None) -> tuple[float, float]:
    """Train one epoch and return its (wall-clock, CPU) seconds."""
    if reporter is not None:
        reporter.start_epoch(epoch, len(session.train_loader))
    cpu_started = time.process_time()
    *_, seconds = session.trainer.train_epoch(session.train_loader, epoch, reporter)
    return seconds, time.process_time() - cpu_started


def measure(epochs: int, every: int) -> dict:
    config = merge(load_recipe("mnist-mlp"), {"train": {"epochs": epochs}}, source="benchmark")
    plain = sessions.prepare(config)
    recorded = sessions.prepare(config)
    with tempfile.TemporaryDirectory() as folder:
        recorder = StatsRecorder(recorded.model, RunDir(Path(folder)), every, recorded.trainer.optimizer)
        plain_times, recorded_times = [], []
        for epoch in range(1, epochs + 1):
            plain_times.append(epoch_seconds(plain, epoch))
            recorded_times.append(epoch_seconds(recorded, epoch, recorder))
        rows = len(recorder.rows)
    result = {"every": every, "epochs": epochs, "steps_per_epoch": len(plain.train_loader), "rows_recorded": rows,
              "threads": plain.threads}
    for clock, index in (("wall", 0), ("cpu", 1)):
        plain_median = statistics.median(times[index] for times in plain_times)
        recorded_median = statistics.median(times[index] for times in recorded_times)
        result[clock] = {"plain_seconds": [times[index] for times in plain_times],
                         "recorded_seconds": [times[index] for times in recorded_times],
                         "plain_median": plain_median, "recorded_median": recorded_median,
                         "overhead_percent": 100 * (recorded_median / plain_median - 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per side")
    parser.add_argument("--every", type=int, action="append", help="sampling interval in steps (repeatable; "
                        "default: 10 and 1)")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = parser.parse_args()
    results = [measure(args.epochs, every) for every in (args.every or [10, 1])]
    for result in results:
        for clock in ("wall", "cpu"):
            numbers = result[clock]
            print(f"every {result['every']:>3} steps, {clock:>4} time: plain {numbers['plain_median']:.3f} s/epoch, "
                  f"recorded {numbers['recorded_median']:.3f} s/epoch, overhead {numbers['overhead_percent']:+.1f}% "
                  f"({result['rows_recorded']} rows)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(results[0]["threads"]), "results": results}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
