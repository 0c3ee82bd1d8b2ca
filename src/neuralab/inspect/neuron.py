"""One neuron's computation on one input: z = sum_i w_i x_i + b, its activation, and the gradient of the loss.

The model runs in eval mode (no dropout, batch norm with running statistics), so the numbers
are what the trained model computes for that image. The gradient is that of the run's loss for
one target class on this one image, the same gradient one training step on it would start from.
"""

from typing import Any

import torch
from torch import Tensor, nn

from neuralab.inspect.recorder import activation_kind


def parse_neuron(text: str) -> tuple[str, int]:
    """Return (layer name, neuron index) from "LAYER:INDEX", e.g. "hidden.0:5"."""
    layer, sign, index = text.rpartition(":")
    if not sign or not layer or not index.isdigit():
        raise ValueError(f"--neuron expects LAYER:INDEX with a layer name and a neuron index, e.g. hidden.0:5; "
                         f"got {text!r}")
    return layer, int(index)


def linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _linear_layer(model: nn.Module, layer: str, index: int) -> nn.Linear:
    modules = dict(model.named_modules())
    valid = ", ".join(linear_layers(model)) or "none"
    if layer not in modules:
        raise ValueError(f"the model has no layer {layer!r}; its Linear layers are: {valid}")
    module = modules[layer]
    if not isinstance(module, nn.Linear):
        # NOTE: only Linear neurons are shown; a convolution filter's output differs at every position.
        # The layer name is a command-line value, so naming a non-Linear layer is a ValueError like the others.
        raise ValueError(  # noqa: TRY004
            f"--neuron shows neurons of Linear layers, but {layer!r} is a {type(module).__name__}; "
            f"the model's Linear layers are: {valid}")
    if not 0 <= index < module.out_features:
        raise ValueError(f"layer {layer!r} has {module.out_features} neurons, so the index must be in "
                         f"0..{module.out_features - 1}; got {index}")
    return module


def following_activation(model: nn.Module, layer: str) -> tuple[str, nn.Module] | None:
    """Return (name, module) of the activation module that runs right after `layer`, or None.

    Looks at the next leaf module in registration order, which is execution order for the
    sequential models neuralab builds.
    """
    leaves = [(name, module) for name, module in model.named_modules() if not any(True for _ in module.children())]
    names = [name for name, _ in leaves]
    position = names.index(layer) + 1
    if position < len(leaves) and activation_kind(leaves[position][1]) is not None:
        return leaves[position]
    return None


def _forward_capturing(model: nn.Module, module: nn.Linear, activation: nn.Module | None,
                       image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Run the model on `image` and capture the layer's input, pre-activation (with its gradient) and activation."""
    captured: dict[str, Tensor] = {}

    def layer_hook(_module: nn.Module, inputs: tuple[Tensor, ...], outputs: Tensor) -> None:
        captured["inputs"], captured["pre_activation"] = inputs[0], outputs
        outputs.register_hook(lambda gradient: captured.__setitem__("pre_activation_grad", gradient))

    handles = [module.register_forward_hook(layer_hook)]
    if activation is not None:
        handles.append(activation.register_forward_hook(
            lambda _module, _inputs, outputs: captured.__setitem__("output", outputs)))
    try:
        outputs = model(image)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, captured


def neuron_computation(model: nn.Module, image: Tensor, loss_fn: nn.Module, classes_of, layer: str, index: int,
                       target: int | None = None) -> dict[str, Any]:
    """Return neuron `index` of Linear `layer` on `image` (a batch of one), step by step, with its gradient.

    `classes_of` turns model outputs into class indices. The loss is computed for class `target`,
    or for the predicted class when `target` is None. Keys: inputs, weights, products (w_i x_i),
    weighted_sum, bias, pre_activation (and pre_activation_model, the value inside the model's
    forward pass), activation, output (and output_model), predicted, target, loss,
    grad_pre_activation (dL/dz), grad_weights (dL/dw_i) and grad_bias.
    """
    if image.dim() != 4 or len(image) != 1:
        raise ValueError(f"image must be a batch of one (1, C, H, W), got shape {tuple(image.shape)}")
    module = _linear_layer(model, layer, index)
    found = following_activation(model, layer)
    activation_name, activation = found if found is not None else (None, None)

    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        outputs, captured = _forward_capturing(model, module, activation, image)
        predicted = int(classes_of(outputs.detach())[0])
        target = predicted if target is None else target
        loss = loss_fn(outputs, torch.tensor([target]))
        loss.backward()
        result = _neuron_values(module, index, captured)
        result["grad_weights"] = module.weight.grad[index].tolist()
        result["grad_bias"] = float(module.bias.grad[index]) if module.bias is not None else None
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)

    result["activation"] = "none" if activation is None else f"{activation_kind(activation)} ({activation_name})"
    result["output"] = float(activation(torch.tensor(result["pre_activation"]))) if activation is not None \
        else result["pre_activation"]
    result["output_model"] = float(captured["output"][0, index].detach()) if activation is not None \
        else result["pre_activation_model"]
    result.update(layer=layer, index=index, predicted=predicted, target=target, loss=loss.item())
    return result


def _neuron_values(module: nn.Linear, index: int, captured: dict[str, Tensor]) -> dict[str, Any]:
    inputs = captured["inputs"][0].detach()
    weights = module.weight[index].detach()
    products = weights * inputs
    weighted_sum = float(products.sum())
    bias = float(module.bias[index].detach()) if module.bias is not None else 0.0
    return {"inputs": inputs.tolist(), "weights": weights.tolist(), "products": products.tolist(),
            "weighted_sum": weighted_sum, "bias": bias, "pre_activation": weighted_sum + bias,
            "pre_activation_model": float(captured["pre_activation"][0, index].detach()),
            "grad_pre_activation": float(captured["pre_activation_grad"][0, index])}
