"""Registered models: linear, activation-demo, mlp, cnn, cnn-examples, unet and unet-simple."""

from neuralab.models import cnn, linear, mlp, unet  # noqa: F401  (importing registers the models)
from neuralab.models.registry import MODELS, build_model, model_options

__all__ = ["MODELS", "build_model", "model_options"]
