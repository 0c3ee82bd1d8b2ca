"""Activation functions by name, each a fresh `torch.nn` module."""

from torch import nn

from neuralab.registry import Registry

ACTIVATIONS = Registry("activation")

ACTIVATIONS.register("relu", "max(0, x): cheap, no saturation for x > 0, zero gradient for x < 0")(nn.ReLU)
ACTIVATIONS.register("sigmoid", "1 / (1 + exp(-x)): output in (0, 1), saturates at both ends")(nn.Sigmoid)
ACTIVATIONS.register("tanh", "tanh(x): output in (-1, 1), zero-centred, saturates at both ends")(nn.Tanh)
ACTIVATIONS.register("leaky_relu", "x for x > 0, 0.01 x otherwise: ReLU without the dead region")(nn.LeakyReLU)
ACTIVATIONS.register("gelu", "x * Phi(x): smooth ReLU used by transformers")(nn.GELU)
ACTIVATIONS.register("silu", "x * sigmoid(x), also called swish")(nn.SiLU)
ACTIVATIONS.register("identity", "x: no non-linearity")(nn.Identity)

# Activations whose output saturates, so layer statistics count units stuck near their limits.
SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def build_activation(name: str) -> nn.Module:
    """Return a new activation module registered as `name`."""
    return ACTIVATIONS.build(name)
