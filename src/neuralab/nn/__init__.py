"""Named building blocks: activations, losses (with the head/loss fit check), optimizers, schedulers."""

from neuralab.nn.activations import ACTIVATIONS, build_activation
from neuralab.nn.losses import LOSSES, build_loss, check_head_fits_loss
from neuralab.nn.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULERS",
    "build_activation",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "check_head_fits_loss",
]

from neuralab.nn import segmentation_losses  # noqa: F401  (importing registers dice and cross_entropy_dice)
