"""Helpers shared by the benchmark scripts: the peer pipelines' data layout and the machine record."""

import gzip
import json
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from neuralab.data.sources import EMBEDDED_MNIST


def tutorial_layout(root: Path) -> None:
    """Lay out the embedded MNIST the way torchvision's MNIST reader expects: gunzipped in MNIST/raw/."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in EMBEDDED_MNIST.glob("*.gz"):
        with gzip.open(source, "rb") as compressed, open(raw / source.stem, "wb") as target:
            shutil.copyfileobj(compressed, target)


def machine(threads: int | None = None) -> dict:
    """Return what the results were measured on, with the thread count when one applies to every side."""
    record = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
              "torch": torch.__version__, "torchvision": torchvision.__version__}
    if threads is not None:
        record["threads"] = threads
    return record


def run_side(script: str, side: str, options: list[str]) -> dict:
    """Run one side of a benchmark in a fresh Python process; return the JSON line it prints last.

    A fresh process per side keeps each side's peak resident memory its own, and keeps one side's
    caches and thread pools from helping the other.
    """
    command = [sys.executable, script, "--side", side, *options]
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def finish_side(result: dict) -> None:
    """Print a side's result with its peak resident memory, as the last line `run_side` reads."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({**result, "peak_rss_mb": peak_mb}))
