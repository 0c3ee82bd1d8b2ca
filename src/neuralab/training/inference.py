"""Rebuild a trained model from a run directory, and re-evaluate it on the test set."""

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from neuralab.config import RunConfig
from neuralab.data.prepare import build_loader, prepare_test_data
from neuralab.models import build_model
from neuralab.nn import build_loss
from neuralab.training.checkpoint import CheckpointError, load_weights
from neuralab.training.devices import resolve_device
from neuralab.training.engine import Trainer
from neuralab.training.evaluation import evaluate_classifier, evaluate_segmenter
from neuralab.training.runs import RunDir


def load_model(run_dir: Path) -> tuple[nn.Module, dict[str, Any], RunConfig]:
    """Return (model in eval mode, weights metadata, configuration) of a finished run."""
    run = RunDir.open(run_dir)
    config = run.read_config()
    if not run.weights_path.is_file():
        raise FileNotFoundError(f"{run.weights_path}: no final weights; the run has not finished. "
                                f"Resume it with `neuralab train --resume {run.path}`")
    state, metadata = load_weights(run.weights_path)
    if metadata.get("format") != "neuralab-weights":
        raise CheckpointError(f"{run.weights_path}: not a neuralab weights file (no neuralab metadata)")
    architecture = metadata["model"]
    model = build_model(architecture["name"], tuple(architecture["in_shape"]), architecture["num_classes"],
                        **architecture["options"])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{run.weights_path}: weights do not fit model {architecture['name']!r}: "
                              f"{str(error).splitlines()[0]}") from None
    model.eval()
    return model, metadata, config


def evaluate_run(run_dir: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """Return the test metrics of a finished run, recomputed from its saved weights."""
    model, metadata, config = load_model(run_dir)
    data_config = config.data if data_dir is None else dataclasses.replace(config.data, data_dir=str(data_dir))
    test = prepare_test_data(data_config, tuple(metadata["classes"]), tuple(metadata["model"]["in_shape"]))
    if test is None:
        raise ValueError(f"{data_config.data_dir}: no test split to evaluate on; add a test/ sub-folder in the "
                         "training layout, or pass --data-dir with a folder that has one")
    device = resolve_device(config.train.device)
    model.to(device)
    ignore_index = metadata.get("ignore_index")  # absent from weights saved before segmentation support
    trainer = Trainer(model, build_loss(config.train.loss, metadata["head"]), None, None, device,
                      ignore_index=ignore_index,
                      binary_threshold=0.5 if metadata["head"] in ("sigmoid", "softmax") else 0.0)
    loader = build_loader(test, config.train.eval_batch_size, shuffle=False)
    if metadata["task"] == "segmentation":
        return evaluate_segmenter(trainer, loader, metadata["classes"], ignore_index)
    return evaluate_classifier(trainer, loader, metadata["classes"])
