"""Loss functions by name, and the check that a model's output head fits its loss.

Every loss takes `(outputs, targets)`. Float targets are compared with the outputs as they
are (regression, or bce on probabilities). Integer class-index targets work with every loss:
the regression losses (mse, mae, huber) and bce then compare class probabilities with
one-hot targets.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from neuralab.registry import Registry

LOSSES = Registry("loss")

# Output heads a model can end with, and what its outputs then are.
HEADS = {
    "logits": "raw scores (no final activation)",
    "log_softmax": "log-probabilities over the classes",
    "softmax": "probabilities over the classes",
    "sigmoid": "independent probabilities in (0, 1)",
}

# The right pairing for each loss, quoted in errors so a user learns the fix.
PAIRINGS = (
    "valid pairings: head 'logits' with cross_entropy or bce_with_logits, "
    "head 'log_softmax' with nll, head 'sigmoid' with bce"
)

# loss -> head -> why the pair is wrong. Pairs not listed here fit.
_MISFITS = {
    "cross_entropy": {
        "softmax": "cross_entropy applies log-softmax itself, so a softmax head squashes the "
        "scores twice and the gradients vanish",
        "sigmoid": "cross_entropy expects raw scores, not sigmoid probabilities",
    },
    "nll": {
        "logits": "nll expects log-probabilities; on raw logits it is unbounded below and "
        "can report a negative loss",
        "softmax": "nll expects log-probabilities, not probabilities",
        "sigmoid": "nll expects log-probabilities, not probabilities",
    },
    "bce": {
        "logits": "bce expects probabilities in [0, 1]; raw logits outside that range make "
        "log(1 - p) undefined",
        "log_softmax": "bce expects probabilities in [0, 1], not log-probabilities",
    },
    "bce_with_logits": {
        "softmax": "bce_with_logits applies a sigmoid itself, so a softmax head squashes twice",
        "sigmoid": "bce_with_logits applies a sigmoid itself, so a sigmoid head squashes twice",
        "log_softmax": "bce_with_logits expects raw scores, not log-probabilities",
    },
    "dice": {
        "softmax": "dice applies softmax itself, so a softmax head squashes the scores twice",
        "sigmoid": "dice applies softmax itself and expects raw scores, not sigmoid probabilities",
    },
    "cross_entropy_dice": {
        "softmax": "cross_entropy_dice applies softmax itself, so a softmax head squashes the scores twice",
        "sigmoid": "cross_entropy_dice expects raw scores, not sigmoid probabilities",
    },
}


def check_head_fits_loss(head: str, loss: str) -> None:
    """Raise ValueError when a model ending in `head` cannot be trained with `loss`."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    LOSSES.get(loss)
    reason = _MISFITS.get(loss, {}).get(head)
    if reason is not None:
        raise ValueError(f"head {head!r} does not fit loss {loss!r}: {reason}; {PAIRINGS}")


def _probabilities(outputs: Tensor, head: str) -> Tensor:
    """Convert a head's outputs to probabilities."""
    if head == "logits":
        return outputs.softmax(dim=1) if outputs.shape[1] > 1 else outputs.sigmoid()
    if head == "log_softmax":
        return outputs.exp()
    return outputs


def _match_targets(outputs: Tensor, targets: Tensor) -> Tensor:
    """Return float targets shaped like `outputs`, one-hot encoding class indices."""
    if targets.shape == outputs.shape:
        return targets.to(outputs.dtype)
    if outputs.dim() >= 2 and outputs.shape[1] == 1 and targets.shape == outputs.shape[:1] + outputs.shape[2:]:
        return targets.unsqueeze(1).to(outputs.dtype)  # (B, ...) -> (B, 1, ...)
    one_hot = F.one_hot(targets.long(), num_classes=outputs.shape[1])  # (B, ...) -> (B, ..., C)
    return one_hot.movedim(-1, 1).to(outputs.dtype)  # (B, ..., C) -> (B, C, ...)


@dataclass(frozen=True)
class LossSpec:
    """How to compute one named loss from a model's outputs."""

    compare: Callable[[Tensor, Tensor], Tensor]
    on_probabilities: bool  # compare probabilities with one-hot targets


class Loss(nn.Module):
    """A named loss bound to the model's head, taking `(outputs, targets)`."""

    def __init__(self, name: str, spec: LossSpec, head: str) -> None:
        super().__init__()
        self.name = name
        self.spec = spec
        self.head = head

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        class_indices = not targets.is_floating_point()
        if self.spec.on_probabilities and class_indices:
            outputs = _probabilities(outputs, self.head)
            targets = _match_targets(outputs, targets)
        elif self.name == "bce_with_logits" or self.spec.on_probabilities:
            targets = _match_targets(outputs, targets)
        return self.spec.compare(outputs, targets)


def _class_index_loss(function: Callable[..., Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    def compare(outputs: Tensor, targets: Tensor) -> Tensor:
        return function(outputs, targets.long())

    return compare


_SPECS = {
    "mse": ("mean squared error, mean((p - y)^2)", LossSpec(F.mse_loss, True)),
    "mae": ("mean absolute error, mean(|p - y|)", LossSpec(F.l1_loss, True)),
    "huber": ("Huber loss: squared below delta 1, absolute above", LossSpec(F.huber_loss, True)),
    "cross_entropy": ("cross-entropy on raw logits (log-softmax + NLL in one step)",
                      LossSpec(_class_index_loss(F.cross_entropy), False)),
    "nll": ("negative log-likelihood of log-probabilities", LossSpec(_class_index_loss(F.nll_loss), False)),
    "bce": ("binary cross-entropy of probabilities", LossSpec(F.binary_cross_entropy, True)),
    "bce_with_logits": ("binary cross-entropy on logits (sigmoid inside, numerically stable)",
                        LossSpec(F.binary_cross_entropy_with_logits, False)),
}


def _make_factory(name: str, spec: LossSpec) -> Callable[[str], Loss]:
    def factory(head: str = "logits") -> Loss:
        return Loss(name, spec, head)

    return factory


for _name, (_description, _spec) in _SPECS.items():
    LOSSES.register(_name, _description)(_make_factory(_name, _spec))


def build_loss(name: str, head: str) -> Loss:
    """Return loss `name` for a model ending in `head`, after checking that they fit."""
    check_head_fits_loss(head, name)
    return LOSSES.build(name, head)
