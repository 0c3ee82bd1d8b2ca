"""The smallest models: one linear layer, and a three-layer net that shows each activation."""

from torch import Tensor, nn

from neuralab.models.registry import MODELS


class SingleLayer(nn.Module):
    """One linear layer: y = x W^T + b, the weights and biases of a row of neurons."""

    head = "logits"
    task = "regression"

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.linear(inputs.flatten(1))  # (B, ...) -> (B, in_features) -> (B, out_features)


class ActivationDemo(nn.Module):
    """Linear 10-20 + ReLU, Linear 20-10 + Tanh, Linear 10-1 + Sigmoid: a binary classifier."""

    head = "sigmoid"
    task = "binary"

    def __init__(self, in_features: int = 10, hidden_sizes: tuple[int, int] = (20, 10)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_sizes[0])
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_sizes[0], hidden_sizes[1])
        self.tanh = nn.Tanh()
        self.fc3 = nn.Linear(hidden_sizes[1], 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, inputs: Tensor) -> Tensor:
        hidden = self.relu(self.fc1(inputs.flatten(1)))
        hidden = self.tanh(self.fc2(hidden))

        return self.sigmoid(self.fc3(hidden))  # (B, 1): probability of the positive class


def _flat_size(in_shape: tuple[int, ...] | None, default: int) -> int:
    if in_shape is None:
        return default
    size = 1
    for dim in in_shape:
        size *= dim
    return size


@MODELS.register("linear", "a single linear layer of weights and biases (default 10 inputs, 5 outputs)")
def linear(*, in_shape=None, num_classes=None, in_features: int = 10, out_features: int = 5) -> SingleLayer:
    return SingleLayer(_flat_size(in_shape, in_features), num_classes or out_features)


@MODELS.register("activation-demo", "Linear 10-20 ReLU, Linear 20-10 Tanh, Linear 10-1 Sigmoid (binary)")
def activation_demo(*, in_shape=None, num_classes=None, in_features: int = 10) -> ActivationDemo:
    return ActivationDemo(_flat_size(in_shape, in_features))
