"""Weights as pictures: the first layer's weights as images, and which layers get weight histograms.

`first_layer_images` and `scale_symmetric` take plain tensors, such as those saved in
model.safetensors and weights_start.safetensors.
"""

import torch
from torch import Tensor, nn

# Weight tensors of these layer types are drawn as images or histograms. Batch-norm scales are
# left out, because they start at exactly 1 and would squeeze every other histogram.
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def weight_layer_names(model: nn.Module) -> list[str]:
    """Return the names of the Linear and convolution layers of `model`, in model order."""
    return [name for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYERS)]


def first_weight_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """Return (name, module) of the first Linear or convolution layer, or raise ValueError when there is none."""
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            return name, module
    raise ValueError(f"model {type(model).__name__} has no Linear or convolution layer to draw")


def first_layer_images(weight: Tensor, in_shape: tuple[int, int, int]) -> tuple[Tensor, str]:
    """Return the first layer's weights as images (N, H, W) or (N, H, W, 3), and what one image shows.

    A Linear layer over flattened images (in_features = C*H*W) gives one image of the input's
    size per neuron. A convolution gives one kernel-sized image per filter. RGB inputs give RGB
    images; other channel counts show the first input channel.
    """
    channels, height, width = in_shape
    if weight.dim() == 2 and weight.shape[1] == channels * height * width:
        images = weight.reshape(-1, channels, height, width)  # (N, C*H*W) -> (N, C, H, W)
        unit = f"neuron: its {channels}x{height}x{width} input weights"
    elif weight.dim() == 4:
        images = weight  # (out, in, kH, kW)
        unit = f"filter: its {weight.shape[2]}x{weight.shape[3]} kernel"
    else:
        raise ValueError(f"cannot draw a first-layer weight of shape {tuple(weight.shape)} as images for inputs "
                         f"of shape {tuple(in_shape)}: expected (N, {channels * height * width}) or a convolution "
                         "kernel (out, in, kH, kW)")
    if images.shape[1] == 3:
        return images.permute(0, 2, 3, 1).float(), unit  # (N, 3, H, W) -> (N, H, W, 3)
    if images.shape[1] != 1:
        unit += f", input channel 0 of {images.shape[1]}"
    return images[:, 0].float(), unit  # (N, C, H, W) -> (N, H, W)


def scale_symmetric(images: Tensor) -> Tensor:
    """Map each image to [0, 1] with 0.5 at zero weight, scaling by its own maximum |weight|."""
    flat = images.reshape(len(images), -1)  # (N, ...) -> (N, D)
    limit = flat.abs().amax(dim=1).clamp_min(torch.finfo(flat.dtype).tiny)
    shape = (len(images),) + (1,) * (images.dim() - 1)
    return 0.5 + 0.5 * images / limit.reshape(shape)
