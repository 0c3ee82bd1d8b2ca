"""Typed run configuration: frozen dataclasses, YAML load and save, and recipe lookup.

A run's configuration is resolved in layers: the dataclass defaults, then the recipe
(a YAML file shipped in `neuralab/recipes/`), then a user's `--config` YAML file, then
command-line flags. The resolved result is written into every run directory.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neuralab.registry import Registry

RECIPES_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = "mnist-mlp"


def _option(default: Any, help: str, **kwargs: Any) -> Any:
    """Declare a field with its command-line help text."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass(frozen=True)
class ModelConfig:
    """The model name and its options (`neuralab list` shows each model's options)."""

    name: str = _option("mlp", "registered model name")
    # _option gives a mutable default a default_factory, so instances never share this dict.
    options: dict = _option({}, "model options as KEY=VALUE, e.g. hidden_sizes=[256,128]")  # noqa: RUF009


@dataclass(frozen=True)
class DataConfig:
    """The data set, its location and the batch preparation."""

    dataset: str = _option("mnist", "data set name: mnist or fashion-mnist (classification), mnist-scenes "
                           "(digit segmentation built from MNIST), or folder (your images in --data-dir)")
    data_dir: str | None = _option(None, "for mnist, fashion-mnist and mnist-scenes: folder holding the MNIST-style "
                                   "IDX files (default: built-in location, or $NEURALAB_DATA_DIR). For folder: the "
                                   "image folder, either one sub-folder of images per class, or images/ and masks/ "
                                   "paired by file stem; an optional test/ sub-folder in the same layout is the "
                                   "test split")
    val_size: int = _option(5000, "training images held out for validation, chosen with a fixed seed")
    val_seed: int = _option(0, "seed of the validation hold-out, independent of --seed")
    mean: float | None = _option(None, "normalization mean (default: the data set's pixel mean)")
    std: float | None = _option(None, "normalization standard deviation (default: the data set's)")
    augment: str = _option("none", "training augmentation: none, shift (random whole-pixel shifts) or affine")
    max_shift: int = _option(2, "largest random shift in pixels for shift/affine augmentation")
    train_subset: int | None = _option(None, "use only the first N training images (quick experiments)")
    test_subset: int | None = _option(None, "use only the first N test images (quick experiments)")
    train_scenes: int = _option(20000, "mnist-scenes: number of training scenes")
    val_scenes: int = _option(2000, "mnist-scenes: number of validation scenes, drawn from the val_size held-out "
                              "digits (the test set is always 1,000 scenes)")
    num_classes: int | None = _option(None, "folder segmentation: number of mask classes, background included "
                                      "(default: one per line of data_dir/classes.txt). With 2 classes, mask "
                                      "value 255 means class 1; with more, 255 marks pixels to ignore")
    image_size: int | None = _option(None, "folder: resize every image and mask to SIZE x SIZE pixels "
                                     "(default: keep the size, which every image must then share)")
    channels: int | None = _option(None, "folder: convert images to 1 (grayscale) or 3 (RGB) channels "
                                   "(default: 1 if every training image is grayscale, else 3)")
    memory_budget_mb: int = _option(2048, "folder: largest size in MiB of the decoded images held in memory; "
                                    "a larger split is decoded from disk batch by batch")
    crop: bool = _option(False, "folder segmentation: train on random image_size x image_size crops at the stored "
                         "scale (padded where an image is smaller) instead of resizing; validation and test "
                         "images keep their own size")
    num_workers: int | None = _option(None, "folder: processes that decode images read from disk batch by batch "
                                      "(default: min(2, CPU count); 0 decodes in the training process)")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    optimizer: str = _option("adam", "optimizer name: sgd, adam, adamw or rmsprop")
    lr: float = _option(0.003, "learning rate (peak rate for one_cycle)")
    momentum: float = _option(0.0, "momentum for sgd and rmsprop")
    nesterov: bool = _option(False, "use Nesterov momentum (sgd only)")
    weight_decay: float = _option(0.0, "L2 weight decay (decoupled for adamw)")
    scheduler: str = _option("none", "learning-rate schedule: none, step, cosine or one_cycle")
    step_epochs: float = _option(1.0, "epochs between learning-rate drops (step schedule)")
    gamma: float = _option(0.7, "learning-rate factor at each drop (step schedule)")
    warmup_fraction: float = _option(0.25, "fraction of the run spent warming up (one_cycle schedule)")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop itself."""

    loss: str = _option("nll", "loss name (must fit the model's head; see `neuralab list`)")
    batch_size: int = _option(64, "training samples per step (per process under torchrun)")
    epochs: int = _option(15, "number of passes over the training set")
    seed: int = _option(0, "seed for weight initialization, shuffling, dropout and augmentation")
    device: str = _option("auto", "device: auto, cpu, cuda or mps")
    precision: str = _option("fp32", "floating-point precision of the forward pass: fp32, bf16 (autocast) or fp16 "
                             "(autocast with gradient scaling, GPU only)")
    compile: bool = _option(False, "compile the model with torch.compile (the first batches of each shape are slow)")
    deterministic: bool = _option(False, "use only deterministic GPU kernels, cuDNN autotuning off (slower; CPU runs "
                                  "are deterministic without it)")
    threads: int | None = _option(None, "CPU threads (default: chosen from model size and batch size)")
    eval_batch_size: int = _option(1000, "samples per batch during evaluation")
    output_dir: str = _option("runs", "folder under which run directories are created")
    stats_every: int = _option(10, "record layer statistics (gradient norms, activations) every K training steps")
    report: bool = _option(True, "write report.html and its figures into the run directory after training")
    tensorboard: bool = _option(False, "also log scalars, histograms and images for TensorBoard into "
                                "RUN_DIR/tensorboard (needs the tensorboard package)")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run."""

    recipe: str = DEFAULT_RECIPE
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}

RECIPES = Registry("recipe")


def _recipe_description(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0:1]
    return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""


for _path in sorted(RECIPES_DIR.glob("*.yaml")):
    RECIPES.register(_path.stem, _recipe_description(_path))(lambda p=_path: p)


def _check_value(section: str, key: str, value: Any, annotation: Any, source: str) -> Any:
    """Return `value` converted to the field's type, or raise ValueError naming the key and source."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is float and isinstance(value, str) and _parses_as_float(value):
            return float(value)  # PyYAML reads exponents without a dot, such as 1e-3, as strings
        if kind is bool and isinstance(value, bool):
            return value
        if kind in (int, str, dict) and isinstance(value, kind) and not isinstance(value, bool):
            return value
    names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in allowed)
    raise ValueError(f"{source}: {section}.{key} must be {names}, got {value!r}")


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def merge(config: RunConfig, updates: dict[str, Any], source: str) -> RunConfig:
    """Return `config` with the nested `updates` applied; unknown keys raise ValueError naming `source`."""
    changes: dict[str, Any] = {}
    for section, values in updates.items():
        if section == "recipe":
            changes["recipe"] = str(values)
            continue
        if section not in SECTIONS:
            raise ValueError(f"{source}: unknown section {section!r}; valid sections: recipe, {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            # An invalid recipe structure is a value the user gave, which the CLI reports with exit status 2.
            raise ValueError(f"{source}: section {section!r} must be a mapping of keys to values")  # noqa: TRY004
        current = getattr(config, section)
        hints = typing.get_type_hints(type(current))
        fields = {item.name for item in dataclasses.fields(current)}
        checked = {}
        for key, value in values.items():
            if key not in fields:
                raise ValueError(f"{source}: unknown key {section}.{key}; valid keys: {', '.join(sorted(fields))}")
            checked[key] = _check_value(section, key, value, hints[key], source)
        renamed = section == "model" and checked.get("name", current.name) != current.name
        if renamed and "options" not in checked:
            checked["options"] = {}  # the previous model's options mean nothing to another model
        elif section == "model" and "options" in checked and not renamed:
            checked["options"] = {**current.options, **checked["options"]}
        changes[section] = dataclasses.replace(current, **checked)
    return dataclasses.replace(config, **changes)


def load_yaml(path: Path) -> dict[str, Any]:
    """Return the mapping in a YAML file, or raise ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: configuration file not found")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: invalid YAML: {error}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):  # invalid file content, reported like every other invalid value
        raise ValueError(f"{path}: expected a mapping of sections (model, data, optim, train), "  # noqa: TRY004
                         f"got {type(content).__name__}")
    return content


def load_recipe(name: str) -> RunConfig:
    """Return the configuration of recipe `name` over the defaults."""
    path = RECIPES.build(name)
    return merge(RunConfig(recipe=name), load_yaml(path), source=str(path))


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(content: dict[str, Any], source: str) -> RunConfig:
    """Return the configuration stored as `content` (e.g. a run directory's config.yaml)."""
    return merge(RunConfig(), content, source)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
