"""Tests for the segmentation models "unet" and "unet-simple", including their any-size padding."""

import random

import pytest
import torch

from neuralab.models import MODELS, build_model
from neuralab.models.unet import crop_to, pad_to_multiple
from neuralab.nn import build_loss

NUM_CLASSES = 7
ODD_HEIGHT, ODD_WIDTH = 33, 47
MIN_SIZE, MAX_SIZE = 16, 130
NUM_RANDOM_SIZES = 200

# Tiny configurations keep the smoke tests and the size sweep fast. Without batch norm and at width 2,
# seed 0 leaves every ReLU of the last decoder block dead, so no gradient reaches the earlier layers.
# That configuration therefore uses width 4.
TINY_CONFIGS = {
    "unet": ("unet", {"depth": 3, "base_width": 2}),
    "unet-bilinear": ("unet", {"depth": 3, "base_width": 2, "upsampling": "bilinear"}),
    "unet-no-batch-norm": ("unet", {"depth": 2, "base_width": 4, "batch_norm": False}),
    "unet-simple": ("unet-simple", {"width": 2}),
}


def _build_tiny(config: str, in_channels: int = 1) -> torch.nn.Module:
    name, options = TINY_CONFIGS[config]
    return build_model(name, in_shape=(in_channels, ODD_HEIGHT, ODD_WIDTH), num_classes=NUM_CLASSES, **options)


def _sweep_sizes() -> list[tuple[int, int]]:
    squares = [(size, size) for size in range(MIN_SIZE, MAX_SIZE + 1)]
    generator = random.Random(0)
    pairs = [(generator.randint(MIN_SIZE, MAX_SIZE), generator.randint(MIN_SIZE, MAX_SIZE))
             for _ in range(NUM_RANDOM_SIZES)]
    return squares + pairs


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("config", sorted(TINY_CONFIGS))
def test_unet_smoke_odd_sizes(config, in_channels):
    torch.manual_seed(0)
    model = _build_tiny(config, in_channels)
    images = torch.randn(2, in_channels, ODD_HEIGHT, ODD_WIDTH)
    targets = torch.randint(0, NUM_CLASSES, (2, ODD_HEIGHT, ODD_WIDTH))

    logits = model(images)
    build_loss("cross_entropy", model.head)(logits, targets).backward()

    assert logits.shape == (2, NUM_CLASSES, ODD_HEIGHT, ODD_WIDTH)
    assert torch.isfinite(logits).all()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{parameter_name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} has an all-zero gradient"


@pytest.mark.parametrize("config", sorted(TINY_CONFIGS))
def test_unet_output_matches_every_input_size(config):
    model = _build_tiny(config).eval()
    wrong_sizes = []

    with torch.no_grad():
        for height, width in _sweep_sizes():
            logits = model(torch.randn(1, 1, height, width))
            if logits.shape != (1, NUM_CLASSES, height, width):
                wrong_sizes.append(((height, width), tuple(logits.shape)))

    assert wrong_sizes == []


@pytest.mark.parametrize("name", ["unet", "unet-simple"])
def test_unet_contract_attributes(name):
    model = build_model(name, in_shape=(1, 64, 64), num_classes=2)

    assert name in MODELS
    assert model.head == "logits"
    assert model.task == "segmentation"


def test_unet_default_parameter_count_near_half_million():
    model = build_model("unet", in_shape=(1, 64, 64), num_classes=2)

    count = sum(parameter.numel() for parameter in model.parameters())

    assert count == pytest.approx(500_000, rel=0.1)


def test_unet_default_widths():
    model = build_model("unet", in_shape=(1, 64, 64), num_classes=2)

    # Three poolings with widths doubling from 16 put 128 channels in the bottleneck at 1/8 resolution.
    features = model.bottleneck(torch.zeros(1, 64, 8, 8))

    assert model.size_multiple == 8
    assert features.shape == (1, 128, 8, 8)


def test_unet_simple_layers():
    num_classes = 3
    model = build_model("unet-simple", in_shape=(1, 64, 64), num_classes=num_classes)
    conv = 1 * 64 * 3 * 3 + 64
    transposed_conv = 64 * num_classes * 2 * 2 + num_classes
    output_conv = num_classes * num_classes + num_classes

    count = sum(parameter.numel() for parameter in model.parameters())

    assert model.conv.out_channels == 64
    assert model.upsample.stride == (2, 2)
    assert count == conv + transposed_conv + output_conv


def test_pad_to_multiple_replicates_bottom_right_edges():
    images = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)

    padded = pad_to_multiple(images, 4)

    assert padded.shape == (2, 3, 8, 8)
    torch.testing.assert_close(padded[..., :5, :7], images)
    torch.testing.assert_close(padded[..., 5:, :7], images[..., 4:5, :].expand(2, 3, 3, 7))
    torch.testing.assert_close(padded[..., :5, 7:], images[..., :, 6:7])


def test_pad_to_multiple_skips_fitting_sizes():
    images = torch.randn(1, 1, 16, 24)

    assert pad_to_multiple(images, 8) is images


def test_crop_to_undoes_padding():
    images = torch.randn(1, 2, 65, 97)

    cropped = crop_to(pad_to_multiple(images, 8), 65, 97)

    torch.testing.assert_close(cropped, images)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("unet", {"depth": 0}, r"depth is the number of poolings and must be at least 1, got 0"),
        ("unet", {"base_width": 0}, r"base_width must be positive, got 0"),
        ("unet", {"upsampling": "nearest"}, r"unknown upsampling 'nearest'; valid modes: transpose, bilinear"),
        ("unet-simple", {"width": 0}, r"width must be positive, got 0"),
    ],
)
def test_unet_rejects_invalid_options(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, in_shape=(1, 64, 64), num_classes=2, **options)


def test_unet_rejects_in_shape_without_three_dims():
    with pytest.raises(ValueError, match=r"in_shape must be \(channels, height, width\), got \(64, 64\)"):
        build_model("unet", in_shape=(64, 64), num_classes=2)
