"""Run every benchmark, one after the other, then print one table of their ratios.

    python bench/run_all.py [--quick] [--predict-run RUN_DIR]

Each benchmark writes its own JSON file to bench/results/, and this script gathers them into
bench/results/suite.json. `--quick` shortens every benchmark (fewer epochs, scenes and files)
to check that the suite runs; its numbers are not the ones BENCHMARKS.md reports. Prediction
needs a trained MNIST run: `--predict-run`, or else a 2-epoch mnist-mlp run trained here first.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def run(script: str, *options: str) -> None:
    """Run one benchmark script, with its output shown as it goes."""
    command = [sys.executable, str(BENCH / script), *options]
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)


def train_predict_run(output_dir: Path) -> Path:
    """Train a short mnist-mlp run for the prediction benchmark; return its run directory."""
    command = [sys.executable, "-m", "neuralab", "train", "mnist-mlp", "--epochs", "2", "--no-report",
               "--output-dir", str(output_dir)]
    subprocess.run(command, check=True)
    return next(output_dir.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorten every benchmark, to check that the suite runs")
    parser.add_argument("--predict-run", type=Path, help="a trained MNIST run directory for the prediction benchmark")
    args = parser.parse_args()
    quick = args.quick

    with tempfile.TemporaryDirectory() as scratch:
        predict_run = args.predict_run or train_predict_run(Path(scratch) / "runs")
        run("mlp_tutorial.py", "--epochs", "2" if quick else "15", "--json", str(RESULTS / "mlp.json"))
        run("cnn_time_to_99.py", *(["--max-epochs", "1"] if quick else []), "--json", str(RESULTS / "cnn.json"))
        run("unet_epoch.py", "--scenes", "200" if quick else "2000", "--repeats", "1" if quick else "3",
            "--json", str(RESULTS / "unet.json"))
        run("predict_folder.py", str(predict_run), "--count", "100" if quick else "1000",
            "--json", str(RESULTS / "predict_folder.json"))

    names = ("mlp", "cnn", "unet", "predict_folder")
    suite = {"machine": machine(), "quick": quick,
             "results": {name: json.loads((RESULTS / f"{name}.json").read_text()) for name in names}}
    (RESULTS / "suite.json").write_text(json.dumps(suite, indent=2) + "\n")

    results = suite["results"]
    print(f"\n{'benchmark':<44}{'ratio':>8}")
    print(f"{'MLP epoch vs the tutorial DataLoader':<44}{results['mlp']['speedup']:>7.1f}x")
    floor_ratio = results["mlp"]["neuralab_epoch_s"] / results["mlp"]["floor_s_per_epoch"]
    print(f"{'MLP epoch vs the compute floor':<44}{floor_ratio:>7.2f}x")
    cnn_speedup = results["cnn"]["speedup"]
    print(f"{'CNN time to 99% vs pytorch/examples':<44}" + (f"{cnn_speedup:>7.1f}x" if cnn_speedup else "  not reached"))
    print(f"{'U-Net epoch vs a per-sample DataLoader':<44}{results['unet']['speedup']:>7.2f}x")
    print(f"{'predict a folder vs a per-file loop':<44}{results['predict_folder']['speed_up']:>7.2f}x")
    print(f"results written to {RESULTS / 'suite.json'}")


if __name__ == "__main__":
    main()
