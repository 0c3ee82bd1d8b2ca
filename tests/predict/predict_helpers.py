"""Helpers shared by the predict tests: tiny finished runs, made once per test session, and the
photo-like digit generator of bench/photo_digits.py.

The MLP and CNN are trained for one epoch by `neuralab train`. The U-Net is left untrained (seeded
initialization) and saved the way training saves it, because its predictions only need a valid
model and training it would take most of this folder's time budget. The runs live in a temporary
folder removed at exit. They are cached here rather than in a pytest fixture so that every test
module of this folder shares them without another conftest.py, which would shadow
tests/conftest.py for modules that import from it.
"""

import atexit
import functools
import importlib.util
import shutil
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch

from neuralab.cli import main
from neuralab.config import load_recipe, merge
from neuralab.data import scenes
from neuralab.models import build_model
from neuralab.training.checkpoint import save_weights
from neuralab.training.runs import RunDir
from neuralab.training.session import weights_metadata

# One epoch on the first 600 built-in MNIST training images (500 for training, 100 held out) and
# 100 test images: a second or two per model on 2 CPU cores.
CLASSIFIER_FLAGS = ["--epochs", "1", "--train-subset", "600", "--val-size", "100", "--test-subset", "100",
                    "--batch-size", "64", "--no-report"]
TRAIN_ARGUMENTS = {
    "mlp": ["mnist-mlp", *CLASSIFIER_FLAGS],
    "cnn": ["mnist-cnn", *CLASSIFIER_FLAGS, "--model-option", "channels=[4,8]", "--model-option", "hidden_size=16"],
}
# Two poolings, so the U-Net pads its input to multiples of 4.
UNET_OPTIONS = {"base_width": 4, "depth": 2}

PHOTO_DIGITS_SCRIPT = Path(__file__).parents[2] / "bench" / "photo_digits.py"

_ROOT = Path(tempfile.mkdtemp(prefix="neuralab-predict-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def tiny_run(kind: str) -> Path:
    """Return the run directory of tiny run `kind` (mlp, cnn or unet), making it on first use."""
    output_dir = _ROOT / kind
    if kind == "unet":
        return _untrained_unet_run(output_dir)
    status = main(["train", *TRAIN_ARGUMENTS[kind], "--output-dir", str(output_dir)])
    assert status == 0, f"training the tiny {kind} run failed"
    (run_dir,) = output_dir.iterdir()
    return run_dir


def _untrained_unet_run(output_dir: Path) -> Path:
    """Write a mnist-scenes-unet run directory with seeded, untrained weights and training's metadata."""
    config = merge(load_recipe("mnist-scenes-unet"), {"model": {"options": UNET_OPTIONS}}, source="predict_helpers")
    torch.manual_seed(0)
    model = build_model("unet", scenes.IN_SHAPE, len(scenes.CLASSES), **UNET_OPTIONS)
    data = SimpleNamespace(in_shape=scenes.IN_SHAPE, classes=scenes.CLASSES, ignore_index=None, mean=scenes.MEAN,
                           std=scenes.STD)
    run = RunDir.create(output_dir, config.recipe)
    run.write_config(config)
    save_weights(run.weights_path, model, weights_metadata(SimpleNamespace(config=config, data=data, model=model)))
    return run.path


def photo_digits() -> ModuleType:
    """Return bench/photo_digits.py as a module: `write_photo_digits(folder, count, seed)` writes labelled photos."""
    spec = importlib.util.spec_from_file_location("photo_digits", PHOTO_DIGITS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
