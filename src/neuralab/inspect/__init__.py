"""Figures that show what happens inside a network: activations, losses, and shared figure style.

The modules of this package add the rest: layer statistics recorded during training
(`recorder`), the run report (`report`), the autograd graph (`graph`), one neuron's
computation (`neuron`), variant comparisons (`compare`) and TensorBoard logging (`tensorboard`).
Importing this package imports matplotlib.
"""

from neuralab.inspect.concept_plots import (
    activation_and_derivative,
    activation_figure,
    cross_entropy_identity,
    loss_figure,
    plot_activations,
    plot_losses,
)
from neuralab.inspect.figures import MIN_FONT_PT, save_figure, small_texts

__all__ = [
    "MIN_FONT_PT",
    "activation_and_derivative",
    "activation_figure",
    "cross_entropy_identity",
    "loss_figure",
    "plot_activations",
    "plot_losses",
    "save_figure",
    "small_texts",
]
