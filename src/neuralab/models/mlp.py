"""The fully connected classifier: flatten, hidden Linear + activation (+ dropout) layers, output head."""

from collections.abc import Sequence

from torch import Tensor, nn

from neuralab.models.registry import MODELS
from neuralab.nn.activations import build_activation
from neuralab.nn.losses import HEADS

MNIST_SHAPE = (1, 28, 28)


class MLP(nn.Module):
    """A multilayer perceptron over flattened images, e.g. 784-128-64-10 for MNIST."""

    task = "classification"

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int,
                 activation: str = "relu", dropout: float = 0.0, head: str = "log_softmax") -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.head = head

        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), build_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        features = images.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
        features = self.hidden(features)
        logits = self.output(features)

        if self.head == "log_softmax":
            return logits.log_softmax(dim=1)
        if self.head == "softmax":
            return logits.softmax(dim=1)
        if self.head == "sigmoid":
            return logits.sigmoid()
        return logits


@MODELS.register("mlp", "fully connected classifier, 784-128-64-10 with ReLU and log-softmax by default")
def mlp(*, in_shape=None, num_classes=None, hidden_sizes: Sequence[int] = (128, 64), activation: str = "relu",
        dropout: float = 0.0, head: str = "log_softmax") -> MLP:
    channels, height, width = in_shape or MNIST_SHAPE
    return MLP(channels * height * width, list(hidden_sizes), num_classes or 10, activation, dropout, head)
