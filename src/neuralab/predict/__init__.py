"""Prediction on a user's own images, and export of trained models to ONNX and torch.export files."""

from neuralab.predict.inputs import Failure
from neuralab.predict.predictor import Classification, PredictionWarning, Predictor, Segmentation, load

__all__ = ["Classification", "Failure", "PredictionWarning", "Predictor", "Segmentation", "load"]
