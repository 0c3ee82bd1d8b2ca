"""Tests for the convolutional classifiers "cnn" and "cnn-examples"."""

import pytest
import torch

from neuralab.models import MODELS, build_model
from neuralab.models.cnn import feature_shape
from neuralab.nn import build_loss

NUM_CLASSES = 7
ODD_HEIGHT, ODD_WIDTH = 29, 31

# Tiny configurations keep the smoke tests fast. The cnn-examples network has no width options, so it runs at full size.
TINY_OPTIONS = {
    "cnn": {"channels": (4, 8), "convs_per_block": 2, "hidden_size": 16},
    "cnn-examples": {},
}


def _loss_for(model: torch.nn.Module) -> torch.nn.Module:
    return build_loss("nll" if model.head == "log_softmax" else "cross_entropy", model.head)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", sorted(TINY_OPTIONS))
def test_cnn_smoke_odd_sizes(name, in_channels):
    torch.manual_seed(0)
    in_shape = (in_channels, ODD_HEIGHT, ODD_WIDTH)
    model = build_model(name, in_shape=in_shape, num_classes=NUM_CLASSES, **TINY_OPTIONS[name])
    images = torch.randn(4, *in_shape)
    targets = torch.randint(0, NUM_CLASSES, (4,))

    outputs = model(images)
    _loss_for(model)(outputs, targets).backward()

    assert outputs.shape == (4, NUM_CLASSES)
    assert torch.isfinite(outputs).all()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{parameter_name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} has an all-zero gradient"


@pytest.mark.parametrize("name", sorted(TINY_OPTIONS))
def test_cnn_contract_attributes(name):
    model = build_model(name, in_shape=(1, 28, 28), num_classes=10, **TINY_OPTIONS[name])

    assert name in MODELS
    assert model.task == "classification"
    assert model.head == ("log_softmax" if name == "cnn-examples" else "logits")


def test_cnn_examples_matches_pytorch_examples_shapes():
    model = build_model("cnn-examples", in_shape=(1, 28, 28), num_classes=10)
    images = torch.zeros(2, 1, 28, 28)

    features = model.blocks(images)

    # Two unpadded 3x3 convolutions take 28 to 26 to 24, and the 2x2 max-pool takes 24 to 12.
    assert feature_shape((1, 28, 28), [[32, 64]], padding=0) == (64, 12, 12)
    assert features.shape == (2, 64, 12, 12)
    assert model.hidden.in_features == 9216
    assert model.hidden.out_features == 128
    assert model.classifier.out_features == 10
    assert model.feature_dropout.p == 0.25
    assert model.dropout.p == 0.5


def test_cnn_examples_parameter_count():
    model = build_model("cnn-examples", in_shape=(1, 28, 28), num_classes=10)
    conv1 = 1 * 32 * 3 * 3 + 32
    conv2 = 32 * 64 * 3 * 3 + 64
    fc1 = 9216 * 128 + 128
    fc2 = 128 * 10 + 10

    assert sum(parameter.numel() for parameter in model.parameters()) == conv1 + conv2 + fc1 + fc2


def test_cnn_default_flattened_size():
    model = build_model("cnn", in_shape=(1, 28, 28), num_classes=10)

    # Padded convolutions keep 28x28, and each of the two pools halves it: 28 -> 14 -> 7.
    assert model.hidden.in_features == 64 * 7 * 7
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_flattened_size_floors_odd_sizes():
    assert feature_shape((3, 29, 31), [[4, 4], [8, 8]], padding=1) == (8, 7, 7)


@pytest.mark.parametrize("head", ["log_softmax", "softmax"])
def test_cnn_head_gives_distribution(head):
    torch.manual_seed(0)
    model = build_model("cnn", in_shape=(1, 16, 16), num_classes=NUM_CLASSES, channels=(4,), hidden_size=8, head=head)
    model.eval()

    outputs = model(torch.randn(3, 1, 16, 16))

    probabilities = outputs.exp() if head == "log_softmax" else outputs
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))


def test_cnn_rejects_too_small_input():
    with pytest.raises(ValueError, match=r"in_shape \(1, 3, 3\) is too small for 2 conv blocks"):
        build_model("cnn", in_shape=(1, 3, 3), num_classes=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"head": "probabilities"}, r"unknown head 'probabilities'; valid heads: logits"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"feature_dropout": -0.1}, r"feature_dropout must be in \[0, 1\), got -0.1"),
        ({"convs_per_block": 0}, r"convs_per_block must be at least 1, got 0"),
        ({"channels": ()}, r"channels must list at least one block width"),
        ({"channels": (8, 0)}, r"conv widths must be positive"),
        ({"hidden_size": 0}, r"hidden_size must be positive, got 0"),
    ],
)
def test_cnn_rejects_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        build_model("cnn", in_shape=(1, 28, 28), num_classes=10, **options)
