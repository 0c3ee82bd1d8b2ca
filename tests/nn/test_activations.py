"""Tests for the activation registry: each name builds the torch module it describes."""

import pytest
import torch
import torch.nn.functional as F

from neuralab.nn import ACTIVATIONS, build_activation

# name -> torch's functional form of the same activation
FUNCTIONALS = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "leaky_relu": lambda x: F.leaky_relu(x, negative_slope=0.01),
    "gelu": F.gelu,
    "silu": F.silu,
    "identity": lambda x: x,
}


def _inputs() -> torch.Tensor:
    # Both signs, zero, and values large enough to saturate sigmoid and tanh.
    values = torch.linspace(-12.0, 12.0, steps=97)
    return torch.cat([values, torch.tensor([0.0, -1e-3, 1e-3])]).reshape(4, 25)


@pytest.mark.parametrize("name", sorted(FUNCTIONALS))
def test_activation_matches_functional(name):
    inputs = _inputs()

    outputs = build_activation(name)(inputs)

    torch.testing.assert_close(outputs, FUNCTIONALS[name](inputs), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(FUNCTIONALS))
def test_activation_gradient_matches(name):
    ours = _inputs().requires_grad_()
    theirs = _inputs().requires_grad_()

    build_activation(name)(ours).sum().backward()
    FUNCTIONALS[name](theirs).sum().backward()

    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=0)


def test_every_activation_has_reference():
    assert set(ACTIVATIONS.names()) == set(FUNCTIONALS)


def test_activation_is_fresh_module():
    first = build_activation("relu")
    second = build_activation("relu")

    assert isinstance(first, torch.nn.Module)
    assert first is not second


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid names: gelu, identity, leaky_relu"):
        build_activation("swish")
