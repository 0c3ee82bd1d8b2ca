"""Train variants of one configuration that differ in a single key, then compare their curves and final numbers.

Every variant gets the same seed, data and epochs, so the varied key is the only difference.
The comparison folder contains one run directory per variant, curves.png, and the table of final
metrics, wall time and mean first-layer gradient norm over the first epoch as table.csv and
table.md.
"""

import csv
import dataclasses
import io
import re
import statistics
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neuralab.config import SECTIONS, RunConfig, merge
from neuralab.inspect.figures import add_legend, figure_style, label_axes, new_figure, save_figure
from neuralab.inspect.recorded_fit import fit_recorded
from neuralab.inspect.recorder import read_stats
from neuralab.inspect.report import write_report
from neuralab.inspect.training_figures import loss_label
from neuralab.models.registry import model_options
from neuralab.training import session as sessions
from neuralab.training.engine import Reporter
from neuralab.training.runs import RunDir


@dataclass(frozen=True)
class Variant:
    """One configuration of a comparison: the varied key set to `value`."""

    key: str  # e.g. "optim.optimizer" or "model.options.activation"
    value: str  # the value as typed, e.g. "adam"
    config: RunConfig

    @property
    def label(self) -> str:
        return f"{self.key.rpartition('.')[2]}={self.value}"


def split_values(text: str) -> list[str]:
    """Split "a,b,[1,2]" at the commas outside brackets: ["a", "b", "[1,2]"]."""
    values, depth, current = [], 0, ""
    for character in text:
        depth += character in "[{"
        depth -= character in "]}"
        if character == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += character
    values.append(current)
    return [value.strip() for value in values]


def parse_vary(text: str) -> tuple[str, list[str]]:
    """Return (key, values) from "KEY=V1,V2,...", e.g. ("optimizer", ["sgd", "adam"])."""
    key, sign, rest = text.partition("=")
    values = split_values(rest) if rest else []
    if not sign or not key.strip() or not values or any(not value for value in values):
        raise ValueError(f"--vary expects KEY=V1,V2,... with at least one value, e.g. optimizer=sgd,adam; got {text!r}")
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"--vary lists {', '.join(duplicates)} more than once; give each value once")
    return key.strip(), values


def _candidate_keys(config: RunConfig) -> dict[str, list[str]]:
    """Return {bare key: [full keys]} for every configuration field and model option."""
    candidates: dict[str, list[str]] = {"model": ["model.name"]}
    for section, cls in SECTIONS.items():
        if section == "model":
            continue
        for item in dataclasses.fields(cls):
            candidates.setdefault(item.name, []).append(f"{section}.{item.name}")
    for option in model_options(config.model.name):
        candidates.setdefault(option, []).append(f"model.options.{option}")
    return candidates


def resolve_key(config: RunConfig, key: str) -> str:
    """Return the full key ("optim.optimizer", "model.options.activation") of a bare or full key.

    Raises ValueError for an unknown or ambiguous key, listing the valid keys.
    """
    candidates = _candidate_keys(config)
    full_keys = sorted({full for fulls in candidates.values() for full in fulls})
    if key in full_keys:
        return key
    matches = candidates.get(key, [])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"--vary key {key!r} is ambiguous: {', '.join(matches)}; write the full key")
    raise ValueError(f"--vary key {key!r} is not a configuration field or an option of model "
                     f"{config.model.name!r}; valid keys: {', '.join(sorted(candidates))} (or a full key such as "
                     "optim.lr)")


def _update_for(full_key: str, value: str) -> dict[str, Any]:
    """Return the nested configuration update that sets `full_key` to the YAML value of `value`."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if full_key.startswith("model.options."):
        return {"model": {"options": {full_key.removeprefix("model.options."): parsed}}}
    section, _, field = full_key.partition(".")
    return {section: {field: value if _is_text_field(section, field) else parsed}}


def _is_text_field(section: str, field: str) -> bool:
    hints = typing.get_type_hints(SECTIONS[section])
    return hints.get(field) is str


def variants(base: RunConfig, key: str, values: list[str]) -> list[Variant]:
    """Return one checked configuration per value, each differing from `base` only in `key`."""
    full_key = resolve_key(base, key)
    return [Variant(full_key, value, merge(base, _update_for(full_key, value), source=f"--vary {key}={value}"))
            for value in values]


def _folder_name(variant: Variant) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", variant.label)


def first_layer_gradient(stats: dict[str, Any] | None) -> tuple[str | None, float | None, list[tuple[int, float]]]:
    """Return (first layer, its mean gradient norm over the first epoch's sampled steps, every (step, norm))."""
    if not stats or not stats["layers"] or not stats["rows"]:
        return None, None, []
    layer = next(iter(stats["layers"]))
    points = [(row["step"], row["grad_norm"][layer]) for row in stats["rows"] if row["grad_norm"].get(layer) is not None]
    first_epoch = [row["grad_norm"][layer] for row in stats["rows"]
                   if row["epoch"] == 1 and row["grad_norm"].get(layer) is not None]
    return layer, statistics.fmean(first_epoch) if first_epoch else None, points


def train_variant(variant: Variant, session: sessions.Session, folder: Path,
                  reporter: Reporter | None = None) -> dict[str, Any]:
    """Train one prepared variant into run directory `folder`; return its history, summary, wall time and gradients."""
    folder.mkdir(parents=True)
    run = RunDir(folder)
    run.write_config(variant.config)
    started = time.perf_counter()
    summary = fit_recorded(session, run, reporter)
    wall_seconds = time.perf_counter() - started
    if variant.config.train.report:
        write_report(run.path)
    layer, mean_norm, points = first_layer_gradient(read_stats(run))
    return {"label": variant.label, "value": variant.value, "run_dir": str(run.path), "history": session.history,
            "summary": summary, "wall_seconds": wall_seconds, "first_layer": layer,
            "first_layer_grad_norm": mean_norm, "grad_points": points}


def table_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Return (headers, rows) of the comparison table; the last column divides by the first variant's norm."""
    headers = ["variant", "train loss", "val loss", "val accuracy %", "test loss", "test accuracy %", "wall time s",
               "first-layer grad norm, epoch 1", "grad norm / first variant's"]
    reference = results[0]["first_layer_grad_norm"] if results else None
    rows = []
    for result in results:
        last, summary, norm = result["history"][-1], result["summary"], result["first_layer_grad_norm"]
        ratio = norm / reference if norm is not None and reference else None
        rows.append([result["label"], last["train_loss"], last["val_loss"], _percent(last["val_accuracy"]),
                     summary.get("test_loss"), _percent(summary.get("test_accuracy")), result["wall_seconds"],
                     norm, ratio])
    return headers, rows


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _text(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_text(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(headers: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return buffer.getvalue()


def comparison_figure(results: list[dict[str, Any]], key: str, loss: str):
    """Draw every variant's loss and accuracy per epoch and first-layer gradient norm per step, one colour each."""
    with figure_style():
        figure, grid = new_figure(1, 3, (16.0, 4.8))
        loss_axes, accuracy_axes, gradient_axes = grid[0]
        for colour, result in enumerate(results):
            history = result["history"]
            epochs = [row["epoch"] for row in history]
            loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", color=f"C{colour}",
                           label=f"{result['label']} training")
            accuracy_axes.plot(epochs, [100 * row["train_accuracy"] for row in history], "o-", color=f"C{colour}",
                               label=f"{result['label']} training")
            if all(row["val_loss"] is not None for row in history):
                loss_axes.plot(epochs, [row["val_loss"] for row in history], "s--", color=f"C{colour}",
                               label=f"{result['label']} validation")
                accuracy_axes.plot(epochs, [100 * row["val_accuracy"] for row in history], "s--",
                                   color=f"C{colour}", label=f"{result['label']} validation")
            if result["grad_points"]:
                steps, norms = zip(*result["grad_points"])
                gradient_axes.plot(steps, norms, color=f"C{colour}", label=result["label"])
        label_axes(loss_axes, "Loss", "epoch", loss_label(loss))
        label_axes(accuracy_axes, "Accuracy", "epoch", "accuracy (%)")
        gradient_axes.set_yscale("log")
        layer = next((result["first_layer"] for result in results if result["first_layer"]), "first layer")
        label_axes(gradient_axes, f"Gradient norm of {layer}", "training step", "L2 norm of the layer's gradients")
        for axes in (loss_axes, accuracy_axes, gradient_axes):
            add_legend(axes, fontsize=8)
        figure.suptitle(f"Comparison of {key}: same seed, data and epochs")
    return figure


def compare(base: RunConfig, key: str, values: list[str], output_dir: Path,
            reporter_for: Callable[[Variant, Path], Reporter | None] | None = None) -> dict[str, Any]:
    """Train one variant per value into a new folder under `output_dir`; write curves.png, table.csv, table.md.

    `reporter_for(variant, run_folder)`, when given, returns the progress reporter of each variant.
    Returns {"folder", "results", "headers", "rows", "figure", "csv", "markdown"}.
    """
    planned = variants(base, key, values)
    for variant in planned:
        # Every variant is built once before any trains, so a bad value stops the command before training starts.
        sessions.prepare(variant.config)
    folder = None
    results = []
    for variant in planned:
        session = sessions.prepare(variant.config)
        if folder is None:  # created once the first variant is built, so a bad configuration leaves nothing
            folder = RunDir.create(output_dir, f"compare-{base.recipe}-{key}").path
        run_folder = folder / _folder_name(variant)
        reporter = reporter_for(variant, run_folder) if reporter_for is not None else None
        results.append(train_variant(variant, session, run_folder, reporter))
        del session  # free its data before the next variant loads its own
    headers, rows = table_rows(results)
    figure = save_figure(comparison_figure(results, key, base.train.loss), folder / "curves.png")
    (folder / "table.csv").write_text(csv_table(headers, rows), encoding="utf-8")
    (folder / "table.md").write_text(markdown_table(headers, rows), encoding="utf-8")
    return {"folder": folder, "results": results, "headers": headers, "rows": rows, "figure": figure,
            "csv": folder / "table.csv", "markdown": folder / "table.md"}
