"""The run directory: the one place that decides what a run writes and where.

    runs/<recipe>-<timestamp>/
        config.yaml        resolved configuration
        metrics.jsonl      one JSON row per finished epoch
        checkpoint.pt      resumable training state (weights-only loadable)
        model.safetensors  final weights with architecture and preprocessing metadata
        summary.json       final test numbers
        stats.json         layer statistics sampled during training (gradient norms, activations)
        weights_start.safetensors   the weights before the first step, for the report's histograms
        report.html        self-contained report, with its figures as PNG files in report/
"""

import json
import time
from pathlib import Path
from typing import Any

import yaml

from neuralab.config import RunConfig, from_dict, to_yaml
from neuralab.training.checkpoint import write_text


class RunDir:
    """Paths and readers/writers of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    weights_path = property(lambda self: self.path / "model.safetensors")
    summary_path = property(lambda self: self.path / "summary.json")
    stats_path = property(lambda self: self.path / "stats.json")
    start_weights_path = property(lambda self: self.path / "weights_start.safetensors")
    report_path = property(lambda self: self.path / "report.html")
    report_dir = property(lambda self: self.path / "report")

    @classmethod
    def create(cls, output_dir: Path, recipe: str) -> "RunDir":
        """Create a new, empty run directory named after the recipe and the local time."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            suffix = "" if attempt == 1 else f"-{attempt}"
            path = output_dir / f"{recipe}-{stamp}{suffix}"
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise FileExistsError(f"{output_dir}: cannot find a free run directory name for {recipe}-{stamp}")

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        """Return an existing run directory, or raise ValueError if `path` is not one."""
        run = cls(Path(path))
        if not run.path.is_dir():
            raise FileNotFoundError(f"{run.path}: run directory not found")
        if not run.config_path.is_file():
            raise ValueError(f"{run.path}: not a neuralab run directory (no config.yaml); "
                             "pass a folder created by `neuralab train`")
        return run

    def write_config(self, config: RunConfig) -> None:
        write_text(self.config_path, to_yaml(config))

    def read_config(self) -> RunConfig:
        try:
            content = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ValueError(f"{self.config_path}: invalid YAML: {error}") from None
        return from_dict(content or {}, source=str(self.config_path))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the whole metrics file atomically (it contains one small row per epoch)."""
        write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_text(self.summary_path, json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary_path.read_text(encoding="utf-8"))
