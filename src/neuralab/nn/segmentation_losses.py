"""Segmentation losses: soft multi-class Dice ("dice") and cross-entropy plus Dice ("cross_entropy_dice").

Both take raw logits (B, C, H, W) and class-index targets (B, H, W). Pixels whose target is
`ignore_index` count in neither term. The default 255 is the "void" label of Pascal VOC masks.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuralab.nn.losses import LOSSES, check_head_fits_loss

IGNORE_INDEX = 255
# Added to the numerator and denominator of every class's Dice score, so a class absent from both
# the prediction and the targets scores 1 instead of 0/0.
DEFAULT_SMOOTH = 1.0


def _check_targets(logits: Tensor, targets: Tensor, ignore_index: int) -> None:
    """Raise unless `targets` holds one class index (or `ignore_index`) per pixel of `logits`."""
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must hold class indices in an integer tensor, got dtype {targets.dtype}")
    expected = logits.shape[:1] + logits.shape[2:]
    if targets.shape != expected:
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit logits of shape {tuple(logits.shape)}; "
            f"expected class indices of shape {tuple(expected)}"
        )
    num_classes = logits.shape[1]
    out_of_range = (targets != ignore_index) & ((targets < 0) | (targets >= num_classes))
    if out_of_range.any():
        found = targets[out_of_range].unique()[:5].tolist()
        raise ValueError(
            f"targets contain class indices {found} outside [0, {num_classes}); mark pixels to skip "
            f"with ignore_index {ignore_index} or build the model with more classes"
        )


def soft_dice_loss(logits: Tensor, targets: Tensor, *, ignore_index: int = IGNORE_INDEX,
                   smooth: float = DEFAULT_SMOOTH) -> Tensor:
    """Return 1 - the mean over classes of the soft Dice score (2 sum(p*y) + smooth) / (sum(p) + sum(y) + smooth).

    p is softmax(logits) and y the one-hot targets. The sums run over the batch and all pixels
    except the ignored ones, so each class gets one score per batch.
    """
    _check_targets(logits, targets, ignore_index)
    num_classes = logits.shape[1]

    # Softmax and sums run in float32 because a float16 sum over many pixels overflows at 65504.
    probabilities = logits.float().softmax(dim=1).flatten(2)  # (B, C, H, W) -> (B, C, H*W)
    targets = targets.flatten(1).unsqueeze(1)  # (B, H, W) -> (B, 1, H*W)
    valid = targets != ignore_index  # (B, 1, H*W)
    classes = torch.arange(num_classes, device=logits.device).view(1, -1, 1)  # (C,) -> (1, C, 1)
    one_hot = ((targets == classes) & valid).float()  # (B, 1, H*W) vs (1, C, 1) -> (B, C, H*W)
    probabilities = probabilities * valid

    intersection = (probabilities * one_hot).sum(dim=(0, 2))  # (B, C, H*W) -> (C,)
    cardinality = probabilities.sum(dim=(0, 2)) + one_hot.sum(dim=(0, 2))  # (B, C, H*W) -> (C,)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    return 1 - dice.mean()


def masked_cross_entropy(logits: Tensor, targets: Tensor, *, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Return the mean cross-entropy over the pixels not marked `ignore_index`, or 0 when every pixel is.

    F.cross_entropy with reduction="mean" returns NaN when every pixel is ignored, hence the sum and division.
    """
    total = F.cross_entropy(logits.float(), targets.long(), ignore_index=ignore_index, reduction="sum")
    num_valid = (targets != ignore_index).sum().clamp_min(1)
    return total / num_valid


class SegmentationLoss(nn.Module):
    """Soft Dice, plus cross-entropy when `with_cross_entropy`, taking `(logits, targets)`."""

    def __init__(self, name: str, head: str, *, with_cross_entropy: bool, ignore_index: int, smooth: float) -> None:
        super().__init__()
        check_head_fits_loss(head, name)
        if smooth < 0:
            raise ValueError(f"smooth must be non-negative, got {smooth}")
        self.name = name
        self.head = head
        self.with_cross_entropy = with_cross_entropy
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss = soft_dice_loss(logits, targets, ignore_index=self.ignore_index, smooth=self.smooth)
        if self.with_cross_entropy:
            loss = loss + masked_cross_entropy(logits, targets, ignore_index=self.ignore_index)
        return loss


@LOSSES.register("dice", "soft multi-class Dice on the softmax of logits, skipping target 255")
def dice(head: str = "logits", *, ignore_index: int = IGNORE_INDEX, smooth: float = DEFAULT_SMOOTH) -> SegmentationLoss:
    return SegmentationLoss("dice", head, with_cross_entropy=False, ignore_index=ignore_index, smooth=smooth)


@LOSSES.register("cross_entropy_dice", "cross-entropy plus soft Dice on logits, skipping target 255")
def cross_entropy_dice(head: str = "logits", *, ignore_index: int = IGNORE_INDEX,
                       smooth: float = DEFAULT_SMOOTH) -> SegmentationLoss:
    return SegmentationLoss("cross_entropy_dice", head, with_cross_entropy=True, ignore_index=ignore_index,
                            smooth=smooth)
