"""U-Net segmentation models: "unet" (encoder, bottleneck and a decoder with skip connections) and
"unet-simple" (one conv and pool down, one transposed conv up, no skip connections).

Both accept any input height and width. They pad the input at the bottom and right to a multiple of
their total down-sampling factor and crop the output back, so the output is (B, num_classes, H, W).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralab.models.registry import MODELS

POOL_SIZE = 2
UPSAMPLING_MODES = ("transpose", "bilinear")
DEFAULT_IN_CHANNELS = 1
DEFAULT_NUM_CLASSES = 2  # background and foreground


def pad_to_multiple(images: Tensor, multiple: int) -> Tensor:
    """Pad the bottom rows and right columns so that height and width become multiples of `multiple`.

    Replicating the edge pixels, unlike zero padding, adds no artificial border for the model to segment.
    """
    height, width = images.shape[-2:]
    pad_bottom = -height % multiple
    pad_right = -width % multiple
    if pad_bottom == 0 and pad_right == 0:
        return images
    return F.pad(images, (0, pad_right, 0, pad_bottom), mode="replicate")  # (B, C, H, W) -> (B, C, H', W')


def crop_to(outputs: Tensor, height: int, width: int) -> Tensor:
    """Drop the rows and columns that `pad_to_multiple` added."""
    return outputs[..., :height, :width]  # (B, K, H', W') -> (B, K, H, W)


def double_conv(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """Build two size-preserving 3x3 convolutions, each followed by optional batch norm and ReLU."""
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        # Batch norm adds its own shift, which makes a convolution bias redundant.
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def upsampler(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """Build a layer that doubles height and width and maps `in_channels` to `out_channels`."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=POOL_SIZE, stride=POOL_SIZE)
    return nn.Sequential(
        nn.Upsample(scale_factor=POOL_SIZE, mode="bilinear", align_corners=False),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


class UNet(nn.Module):
    """An encoder-decoder whose decoder concatenates the encoder feature map of the same resolution."""

    head = "logits"
    task = "segmentation"

    def __init__(self, in_channels: int, num_classes: int, *, depth: int, base_width: int, batch_norm: bool,
                 upsampling: str) -> None:
        super().__init__()
        # Width doubles at every pooling: base_width, 2*base_width, ..., with the widest in the bottleneck.
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.size_multiple = POOL_SIZE**depth

        self.encoder = nn.ModuleList()
        for width in widths[:-1]:
            self.encoder.append(double_conv(in_channels, width, batch_norm))
            in_channels = width
        self.pool = nn.MaxPool2d(POOL_SIZE)
        self.bottleneck = double_conv(widths[-2], widths[-1], batch_norm)

        # The decoder runs from the deepest level to the shallowest.
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width, wider in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.upsamplers.append(upsampler(wider, width, upsampling))
            self.decoder.append(double_conv(2 * width, width, batch_norm))
        self.output = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        features = pad_to_multiple(images, self.size_multiple)

        skips = []
        for block in self.encoder:
            features = block(features)
            skips.append(features)
            features = self.pool(features)

        features = self.bottleneck(features)

        for upsample, block, skip in zip(self.upsamplers, self.decoder, reversed(skips)):
            features = upsample(features)
            features = torch.cat([skip, features], dim=1)  # (B, C, h, w) + (B, C, h, w) -> (B, 2C, h, w)
            features = block(features)

        logits = self.output(features)
        return crop_to(logits, height, width)


class SimpleUNet(nn.Module):
    """The simplified U-Net of introductory tutorials: 3x3 conv, ReLU, 2x2 max-pool, 2x2 transposed conv, 1x1 conv."""

    head = "logits"
    task = "segmentation"
    size_multiple = POOL_SIZE

    def __init__(self, in_channels: int, num_classes: int, *, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(POOL_SIZE)
        self.upsample = nn.ConvTranspose2d(width, num_classes, kernel_size=POOL_SIZE, stride=POOL_SIZE)
        self.output = nn.Conv2d(num_classes, num_classes, kernel_size=1)

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        features = pad_to_multiple(images, self.size_multiple)

        features = self.conv(features)
        features = self.relu(features)
        features = self.pool(features)

        features = self.upsample(features)
        logits = self.output(features)

        return crop_to(logits, height, width)


def _in_channels(in_shape: tuple[int, int, int] | None) -> int:
    """Return the channel count of `in_shape`. Height and width may be anything because the models pad."""
    if in_shape is None:
        return DEFAULT_IN_CHANNELS
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (channels, height, width), got {tuple(in_shape)}")
    return in_shape[0]


@MODELS.register("unet", "U-Net: 3 poolings, widths 16-128, batch norm, transposed-conv upsampling, skip connections")
def unet(*, in_shape: tuple[int, int, int] | None = None, num_classes: int | None = None, depth: int = 3,
         base_width: int = 16, batch_norm: bool = True, upsampling: str = "transpose") -> UNet:
    """Build a U-Net with `depth` poolings whose first level has `base_width` channels.

    The defaults give 482k parameters for 1 input channel and 2 classes.
    """
    if depth < 1:
        raise ValueError(f"depth is the number of poolings and must be at least 1, got {depth}")
    if base_width < 1:
        raise ValueError(f"base_width must be positive, got {base_width}")
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"unknown upsampling {upsampling!r}; valid modes: {', '.join(UPSAMPLING_MODES)}")
    return UNet(_in_channels(in_shape), num_classes or DEFAULT_NUM_CLASSES, depth=depth, base_width=base_width,
                batch_norm=batch_norm, upsampling=upsampling)


@MODELS.register("unet-simple", "tutorial U-Net: conv 3x3 to 64, ReLU, max-pool, transposed conv, 1x1 conv, no skips")
def unet_simple(*, in_shape: tuple[int, int, int] | None = None, num_classes: int | None = None,
                width: int = 64) -> SimpleUNet:
    """Build the simplified U-Net with `width` channels between its convolution and its transposed convolution."""
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    return SimpleUNet(_in_channels(in_shape), num_classes or DEFAULT_NUM_CLASSES, width=width)
