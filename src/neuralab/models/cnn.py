"""Convolutional image classifiers: "cnn" (3x3 conv blocks with batch norm and max-pooling, then a
fully connected head) and "cnn-examples" (the network of pytorch/examples' mnist/main.py).

Both are one `CNN` class: a stack of conv blocks, a flatten, and a two-layer head whose input size
is derived from `in_shape`, so no input-size literal appears in the code.
"""

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from neuralab.models.mlp import MNIST_SHAPE
from neuralab.models.registry import MODELS
from neuralab.nn.losses import HEADS

KERNEL_SIZE = 3
POOL_SIZE = 2

# The module that turns the classifier's logits into each head's outputs.
_HEAD_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "logits": nn.Identity,
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
    "softmax": lambda: nn.Softmax(dim=1),
    "sigmoid": nn.Sigmoid,
}


def conv_block(in_channels: int, widths: Sequence[int], padding: int, batch_norm: bool) -> nn.Sequential:
    """Build `len(widths)` 3x3 convolutions, each followed by optional batch norm and ReLU, then a 2x2 max-pool."""
    layers: list[nn.Module] = []
    for width in widths:
        # Batch norm adds its own shift, which makes a convolution bias redundant.
        layers.append(nn.Conv2d(in_channels, width, KERNEL_SIZE, padding=padding, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        in_channels = width
    layers.append(nn.MaxPool2d(POOL_SIZE))
    return nn.Sequential(*layers)


def feature_shape(in_shape: tuple[int, int, int], block_widths: Sequence[Sequence[int]],
                  padding: int) -> tuple[int, int, int]:
    """Return the (C, H, W) shape that the conv blocks produce for an input of shape `in_shape`."""
    channels, height, width = in_shape
    for widths in block_widths:
        for out_channels in widths:
            height = height + 2 * padding - (KERNEL_SIZE - 1)
            width = width + 2 * padding - (KERNEL_SIZE - 1)
            channels = out_channels
        height, width = height // POOL_SIZE, width // POOL_SIZE
    if height < 1 or width < 1:
        raise ValueError(
            f"in_shape {tuple(in_shape)} is too small for {len(block_widths)} conv blocks: the feature map "
            f"shrinks to {height}x{width}; use larger images or fewer blocks"
        )
    return channels, height, width


class CNN(nn.Module):
    """Conv blocks, then flatten, Linear, ReLU, dropout and a Linear to one score per class."""

    task = "classification"

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, block_widths: Sequence[Sequence[int]],
                 *, padding: int, batch_norm: bool, feature_dropout: float, hidden_size: int, dropout: float,
                 head: str) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (channels, height, width), got {tuple(in_shape)}")
        _check_options(block_widths, feature_dropout, hidden_size, dropout, head)
        self.head = head

        blocks = []
        in_channels = in_shape[0]
        for widths in block_widths:
            blocks.append(conv_block(in_channels, widths, padding, batch_norm))
            in_channels = widths[-1]
        self.blocks = nn.Sequential(*blocks)
        self.feature_dropout = nn.Dropout(feature_dropout)

        channels, height, width = feature_shape(in_shape, block_widths, padding)
        self.hidden = nn.Linear(channels * height * width, hidden_size)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)
        self.output_activation = _HEAD_ACTIVATIONS[head]()

    def forward(self, images: Tensor) -> Tensor:
        features = self.blocks(images)
        features = self.feature_dropout(features)

        features = features.flatten(1)  # (B, C, H', W') -> (B, C*H'*W')
        hidden = self.hidden(features)
        hidden = self.relu(hidden)
        hidden = self.dropout(hidden)
        logits = self.classifier(hidden)

        return self.output_activation(logits)


def _check_options(block_widths: Sequence[Sequence[int]], feature_dropout: float, hidden_size: int,
                   dropout: float, head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if not block_widths or any(not widths for widths in block_widths):
        raise ValueError(f"every conv block needs at least one convolution, got block widths {block_widths}")
    if any(width < 1 for widths in block_widths for width in widths):
        raise ValueError(f"conv widths must be positive, got block widths {block_widths}")
    if hidden_size < 1:
        raise ValueError(f"hidden_size must be positive, got {hidden_size}")
    for name, rate in (("dropout", dropout), ("feature_dropout", feature_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")


@MODELS.register("cnn", "3x3 conv blocks (32, 64 channels, batch norm, 2x2 max-pool), then Linear-128 and logits")
def cnn(*, in_shape: tuple[int, int, int] | None = None, num_classes: int | None = None,
        channels: Sequence[int] = (32, 64), convs_per_block: int = 2, batch_norm: bool = True,
        feature_dropout: float = 0.0, hidden_size: int = 128, dropout: float = 0.5, head: str = "logits") -> CNN:
    """Build a CNN with one block per entry of `channels`, each of `convs_per_block` same-size convolutions."""
    if convs_per_block < 1:
        raise ValueError(f"convs_per_block must be at least 1, got {convs_per_block}")
    if not channels:
        raise ValueError("channels must list at least one block width, e.g. channels=(32, 64)")
    block_widths = [[width] * convs_per_block for width in channels]
    # Padding 1 keeps each 3x3 convolution's output the size of its input, so only pooling shrinks it.
    return CNN(in_shape or MNIST_SHAPE, num_classes or 10, block_widths, padding=1, batch_norm=batch_norm,
               feature_dropout=feature_dropout, hidden_size=hidden_size, dropout=dropout, head=head)


@MODELS.register("cnn-examples", "pytorch/examples mnist/main.py network: conv 32, conv 64, max-pool, Linear-128")
def cnn_examples(*, in_shape: tuple[int, int, int] | None = None, num_classes: int | None = None,
                 head: str = "log_softmax") -> CNN:
    """Build the network of pytorch/examples' mnist/main.py, for comparison with that widely copied script.

    It uses unpadded 3x3 convolutions (1-32, 32-64), one 2x2 max-pool, dropout 0.25, Linear to 128,
    dropout 0.5 and a log-softmax head. On 28x28 images the flattened size is 64*12*12 = 9216.
    """
    return CNN(in_shape or MNIST_SHAPE, num_classes or 10, [[32, 64]], padding=0, batch_norm=False,
               feature_dropout=0.25, hidden_size=128, dropout=0.5, head=head)
