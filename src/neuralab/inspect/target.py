"""The model that `neuralab inspect` examines: a trained run's model, or a recipe's untrained model, with sample inputs."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from neuralab.config import RECIPES, DataConfig, RunConfig, load_recipe
from neuralab.data import folders, scenes
from neuralab.data.batches import to_float_images
from neuralab.data.prepare import normalization, prepare_test_data
from neuralab.data.sources import get_dataset
from neuralab.models import build_model
from neuralab.training.inference import load_model

# Test images kept as samples. Two, because batch norm in training mode needs more than one value per channel.
SAMPLE_IMAGES = 2


@dataclass
class InspectionTarget:
    """A model and what is needed to feed it: classes, input shape, normalization and sample test images."""

    name: str
    model: nn.Module
    config: RunConfig
    classes: tuple[str, ...]
    in_shape: tuple[int, int, int]
    mean: float
    std: float
    images: Tensor  # (SAMPLE_IMAGES, C, H, W), normalized
    targets: Tensor  # their labels (N,) or masks (N, H, W)
    trained: bool
    note: str = ""  # where the sample images came from


def data_classes_and_shape(config: DataConfig) -> tuple[tuple[str, ...], tuple[int, int, int]]:
    """Return (class names, input shape) of a data set without loading its training split."""
    if config.dataset == scenes.NAME:
        return scenes.CLASSES, scenes.IN_SHAPE
    if config.dataset == folders.NAME:
        if not config.data_dir:
            raise ValueError("data set 'folder' reads the images in data.data_dir; set data_dir in the recipe")
        spec = folders.describe(Path(config.data_dir).expanduser(), config.num_classes, config.image_size,
                                config.channels)
        return spec.classes, (spec.channels, *spec.size)
    dataset = get_dataset(config.dataset)
    return dataset.classes, dataset.in_shape


def load_target(text: str) -> InspectionTarget:
    """Return the model of run directory `text`, or the untrained model of recipe `text` (seeded by its train.seed).

    Raises ValueError when `text` is neither, listing the valid recipe names.
    """
    path = Path(text)
    if path.is_dir():
        model, metadata, config = load_model(path)
        classes, in_shape = tuple(metadata["classes"]), tuple(metadata["model"]["in_shape"])
        preprocessing = metadata["preprocessing"]
        mean, std, trained = preprocessing["mean"], preprocessing["std"], True
    elif text in RECIPES:
        config = load_recipe(text)
        classes, in_shape = data_classes_and_shape(config.data)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model.name, in_shape, len(classes), **config.model.options)
        (mean, std), trained = normalization(config.data), False
    else:
        raise ValueError(f"{text!r} is neither a run directory nor a recipe; pass a folder created by "
                         f"`neuralab train` or one of the recipes: {', '.join(RECIPES.names())}")
    images, targets, note = _sample(config, model, classes, in_shape, mean, std)
    return InspectionTarget(text, model, config, classes, in_shape, mean, std, images, targets, trained, note)


def _sample(config: RunConfig, model: nn.Module, classes: tuple[str, ...], in_shape: tuple[int, int, int],
            mean: float, std: float) -> tuple[Tensor, Tensor, str]:
    test = prepare_test_data(config.data, classes, in_shape)
    if test is not None:
        return test.images[:SAMPLE_IMAGES], test.targets[:SAMPLE_IMAGES], "the first test images"
    # A folder data set without test/: black images, labelled class 0 (or background everywhere).
    black = to_float_images(torch.zeros(SAMPLE_IMAGES, *in_shape, dtype=torch.uint8), mean, std)
    target_shape = (SAMPLE_IMAGES, *in_shape[1:]) if model.task == "segmentation" else (SAMPLE_IMAGES,)
    targets = torch.zeros(target_shape, dtype=torch.long)
    return black, targets, "black images (the data set has no test split)"


def load_image(path: Path, in_shape: tuple[int, int, int], mean: float, std: float) -> Tensor:
    """Return the image file at `path` as a normalized batch of one (1, C, H, W), resized to `in_shape`.

    NOTE: the image is used as it is; MNIST models expect a light digit on a dark background, so
    a dark digit on white paper must be inverted first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    channels, height, width = in_shape
    pixels = folders.convert_image(folders.open_image(path), channels)
    pixels, _ = folders.resize(pixels, None, (height, width))
    return to_float_images(pixels.unsqueeze(0), mean, std)  # (C, H, W) -> (1, C, H, W)
