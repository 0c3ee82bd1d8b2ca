"""A training step for plain MLPs that calls autograd's backward kernels directly, without recording a graph.

An `MLP` of Linear layers with ReLU, Sigmoid, Tanh or no activation between them, trained with
NLL on a log-softmax head or cross-entropy on logits, needs a fixed list of ATen calls per step
(28 for 784-128-64-10, views included). `MLPStep` makes the calls that autograd's derivative
formulas make, so its gradients are bitwise those of `loss.backward()`. It skips the graph,
the autograd engine and the modules' Python calls: an mnist-mlp-tutorial epoch took 0.66 s
with it and 0.80 s through autograd, on one CPU thread (bench/mlp_floor_gap.py).
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from neuralab.models.mlp import MLP

_MEAN = 1  # ATen's code for reduction="mean", the default of F.nll_loss and F.cross_entropy
_IGNORE_INDEX = -100  # the default ignore_index of F.nll_loss and F.cross_entropy

# An activation's gradient from the gradient of its output and the output itself, as autograd computes it.
ActivationBackward = Callable[[Tensor, Tensor], Tensor]

# An activation's in-place forward and its backward.
ActivationPair = tuple[Callable[[Tensor], Tensor], ActivationBackward]

_ACTIVATIONS: dict[type[nn.Module], ActivationPair | None] = {
    nn.ReLU: (Tensor.relu_, lambda grad, output: torch.ops.aten.threshold_backward(grad, output, 0)),
    nn.Sigmoid: (Tensor.sigmoid_, torch.ops.aten.sigmoid_backward),
    nn.Tanh: (Tensor.tanh_, torch.ops.aten.tanh_backward),
    nn.Identity: None,
}

# The (model head, loss name) pairs the step computes: NLL of log-probabilities, cross-entropy of logits.
_HEAD_LOSSES = {("log_softmax", "nll"), ("logits", "cross_entropy")}

# Hooks on any module anywhere: a forward or backward hook must see the layers run one by one.
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


class MLPStep:
    """Forward, loss and backward of one batch through an MLP, leaving each parameter's gradient in `.grad`."""

    def __init__(self, model: MLP, layers: list[tuple[nn.Linear, ActivationPair | None]]) -> None:
        """Keep the model's layers. Like an optimizer, the step keeps the parameters the model has now.

        A model changed afterwards (a layer or parameter replaced) needs a new step and a new optimizer.
        """
        self.model = model
        self.layers = layers  # each Linear with the (forward, backward) of the activation after it
        self.outputs_logits = model.head == "logits"
        self._all_modules = list(model.modules())
        self._all_parameters = list(model.parameters())

    def usable(self) -> bool:
        """Return whether the step still applies: no hook, parametrization, frozen parameter, autocast or anomaly mode.

        The engine checks before every step, because layer statistics attach forward hooks for sampled steps only.
        """
        if (torch.is_autocast_enabled("cpu") or torch.is_anomaly_enabled()
                or any(getattr(torch_module, name) for name in _GLOBAL_HOOKS)):
            return False
        for linear, _ in self.layers:
            if type(linear) is not nn.Linear:  # register_parametrization gives the module a new class
                return False
        for module in self._all_modules:
            if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                    or module._backward_pre_hooks):
                return False
        for parameter in self._all_parameters:
            if (not parameter.requires_grad or parameter._backward_hooks
                    or parameter._post_accumulate_grad_hooks):
                return False
        return True

    @torch.no_grad()
    def __call__(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return the model's outputs and the mean loss, and set each parameter's `.grad` to the loss's gradient.

        The gradients are what `optimizer.zero_grad(set_to_none=True)` and then `loss.backward()`
        would leave, to the bit.
        """
        targets = targets.long()
        features = images.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
        layer_inputs = []
        for linear, activation in self.layers:
            layer_inputs.append(features)
            features = torch.addmm(linear.bias, features, linear.weight.t())  # F.linear's call for 2-D inputs
            if activation is not None:
                features = activation[0](features)
        logits = features
        log_probs = logits.log_softmax(dim=1)
        loss, total_weight = torch.ops.aten.nll_loss_forward(log_probs, targets, None, _MEAN, _IGNORE_INDEX)

        grad = torch.ops.aten.nll_loss_backward(torch.ones_like(loss), log_probs, targets, None, _MEAN,
                                                _IGNORE_INDEX, total_weight)
        grad = torch.ops.aten._log_softmax_backward_data(grad, log_probs, 1, log_probs.dtype)
        outputs = log_probs
        for index in reversed(range(len(self.layers))):
            linear, activation = self.layers[index]
            if activation is not None:
                grad = activation[1](grad, outputs)
            linear.weight.grad = grad.t().mm(layer_inputs[index])  # the call of autograd's addmm backward
            linear.bias.grad = grad.sum(0)
            outputs = layer_inputs[index]
            if index > 0:
                grad = grad.mm(linear.weight)
        return (logits if self.outputs_logits else log_probs), loss


def build_mlp_step(model: nn.Module, loss_fn: nn.Module) -> MLPStep | None:
    """Return an MLPStep for `model` and `loss_fn`, or None when autograd must train them."""
    if type(model) is not MLP or (model.head, getattr(loss_fn, "name", None)) not in _HEAD_LOSSES:
        return None
    # The engine's loss is float32 whatever the model's dtype, and autograd's matrix-product
    # backward depends on the weights' memory layout: the step matches it for contiguous float32 only.
    if any(parameter.dtype != torch.float32 or not parameter.is_contiguous() for parameter in model.parameters()):
        return None
    modules = list(model.hidden) + [model.output, None]  # (Linear, activation) pairs, the output Linear last
    if len(modules) % 2:
        return None  # an odd number of dropout layers. An even number fails the Linear check below.
    layers = []
    for linear, activation in zip(modules[0::2], modules[1::2], strict=True):
        if type(linear) is not nn.Linear or linear.bias is None:
            return None
        if activation is not None and type(activation) not in _ACTIVATIONS:
            return None  # dropout, or an activation whose backward needs its input
        layers.append((linear, None if activation is None else _ACTIVATIONS[type(activation)]))
    return MLPStep(model, layers)

