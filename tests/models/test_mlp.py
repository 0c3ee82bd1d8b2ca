"""Tests for the fully connected models "mlp", "linear" and "activation-demo", and the model registry."""

import re

import pytest
import torch
from torch import nn

from neuralab.models import MODELS, build_model, model_options
from neuralab.models import registry as model_registry
from neuralab.nn import build_loss


def _documented_tasks() -> set[str]:
    """Return the values the model registry's docstring lists for the `task` attribute."""
    line = next(line for line in model_registry.__doc__.splitlines() if "`task`" in line)
    return set(re.findall(r'"([a-z]+)"', line))


def _linear_widths(model: nn.Module) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in model.modules() if isinstance(layer, nn.Linear)]


def _check_gradients(model: nn.Module) -> None:
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_mlp_default_is_tutorial_network():
    model = build_model("mlp", in_shape=(1, 28, 28), num_classes=10)

    outputs = model(torch.randn(3, 1, 28, 28))

    assert _linear_widths(model) == [(784, 128), (128, 64), (64, 10)]
    assert outputs.shape == (3, 10)
    assert model.head == "log_softmax"
    torch.testing.assert_close(outputs.exp().sum(dim=1), torch.ones(3), rtol=0, atol=1e-6)


def test_mlp_smoke_odd_sizes():
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=(3, 5, 7), num_classes=7, hidden_sizes=[9, 6], head="logits")
    targets = torch.randint(0, 7, (4,))

    outputs = model(torch.randn(4, 3, 5, 7))
    build_loss("cross_entropy", model.head)(outputs, targets).backward()

    assert outputs.shape == (4, 7)
    assert torch.isfinite(outputs).all()
    _check_gradients(model)


def test_mlp_hidden_sizes_configurable():
    model = build_model("mlp", in_shape=(1, 28, 28), num_classes=10, hidden_sizes=[32, 16, 8])

    assert _linear_widths(model) == [(784, 32), (32, 16), (16, 8), (8, 10)]


def test_mlp_without_hidden_layers():
    model = build_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden_sizes=[])

    assert _linear_widths(model) == [(16, 3)]
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3)


def test_mlp_activation_option():
    model = build_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden_sizes=[5, 5], activation="tanh")

    activations = [layer for layer in model.hidden if not isinstance(layer, nn.Linear)]

    assert len(activations) == 2
    assert all(isinstance(layer, nn.Tanh) for layer in activations)


@pytest.mark.parametrize("head", ["logits", "log_softmax", "softmax", "sigmoid"])
def test_mlp_head_transforms_logits(head):
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden_sizes=[6], head=head)
    images = torch.randn(5, 1, 4, 4)

    logits = model.output(model.hidden(images.flatten(1)))
    expected = {
        "logits": logits,
        "log_softmax": logits.log_softmax(dim=1),
        "softmax": logits.softmax(dim=1),
        "sigmoid": logits.sigmoid(),
    }[head]

    torch.testing.assert_close(model(images), expected, rtol=0, atol=0)


def test_mlp_dropout_only_in_training():
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden_sizes=[64], dropout=0.5)
    images = torch.randn(4, 1, 4, 4)

    model.eval()
    first, second = model(images), model(images)
    model.train()
    dropped = model(images)

    assert sum(isinstance(layer, nn.Dropout) for layer in model.hidden) == 1
    assert torch.equal(first, second)
    assert not torch.equal(first, dropped)


def test_mlp_dropout_out_of_range():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        build_model("mlp", dropout=1.0)


def test_mlp_unknown_head():
    with pytest.raises(ValueError, match="unknown head 'relu'; valid heads: logits, log_softmax"):
        build_model("mlp", head="relu")


def test_mlp_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid names: gelu"):
        build_model("mlp", activation="swish")


def test_linear_shapes():
    default = build_model("linear")
    on_images = build_model("linear", in_shape=(1, 28, 28), num_classes=10)

    assert default(torch.randn(3, 10)).shape == (3, 5)
    assert on_images(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert _linear_widths(on_images) == [(784, 10)]


def test_linear_options():
    model = build_model("linear", in_features=4, out_features=2)

    assert _linear_widths(model) == [(4, 2)]


def test_activation_demo_shape():
    torch.manual_seed(0)
    model = build_model("activation-demo")
    targets = torch.tensor([0, 1, 1, 0, 1, 0])

    outputs = model(torch.randn(6, 10))
    build_loss("bce", model.head)(outputs, targets).backward()

    assert _linear_widths(model) == [(10, 20), (20, 10), (10, 1)]
    assert outputs.shape == (6, 1)
    assert ((outputs > 0) & (outputs < 1)).all()
    assert model.task == "binary"
    _check_gradients(model)


@pytest.mark.parametrize("name", ["mlp", "linear", "activation-demo"])
def test_model_task_documented(name):
    model = build_model(name)

    assert "classification" in _documented_tasks()
    assert model.task in _documented_tasks()


def test_model_options_listed():
    assert model_options("mlp") == {"hidden_sizes": (128, 64), "activation": "relu", "dropout": 0.0,
                                    "head": "log_softmax"}
    assert model_options("linear") == {"in_features": 10, "out_features": 5}


def test_unknown_option_lists_options():
    with pytest.raises(ValueError, match="model 'mlp' has no option 'depth'; "
                                         "its options are: hidden_sizes, activation, dropout, head"):
        build_model("mlp", depth=3)


def test_unknown_model_lists_names():
    assert "mlp" in MODELS

    with pytest.raises(ValueError, match="unknown model 'nosuch'; valid names: activation-demo, .*linear, mlp"):
        build_model("nosuch")
