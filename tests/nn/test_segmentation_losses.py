"""Tests for the segmentation losses "dice" and "cross_entropy_dice"."""

import math

import pytest
import torch
import torch.nn.functional as F

from neuralab.nn import LOSSES, build_loss
from neuralab.nn.segmentation_losses import masked_cross_entropy, soft_dice_loss

IGNORE = 255


def _two_pixel_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Return logits and targets for a 1x1x3 image of two classes whose third pixel is ignored.

    Pixel 0 has logits (0, ln 3), so softmax (1/4, 3/4), and target 1.
    Pixel 1 has logits (0, 0), so softmax (1/2, 1/2), and target 0.
    Pixel 2 is confidently class 0 but its target is the ignore index.
    """
    logits = torch.tensor([[0.0, 0.0, 10.0], [math.log(3.0), 0.0, 0.0]]).reshape(1, 2, 1, 3)
    targets = torch.tensor([[[1, 0, IGNORE]]])
    return logits, targets


def test_dice_matches_hand_computed_value():
    logits, targets = _two_pixel_case()

    loss = soft_dice_loss(logits, targets, smooth=0.0)

    # Class 0: 2 * 1/2 / ((1/4 + 1/2) + 1) = 4/7. Class 1: 2 * 3/4 / ((3/4 + 1/2) + 1) = 2/3.
    # Loss: 1 - (4/7 + 2/3) / 2 = 8/21.
    assert loss.item() == pytest.approx(8 / 21, abs=1e-6)


def test_dice_smoothing_matches_hand_computed_value():
    logits, targets = _two_pixel_case()

    loss = soft_dice_loss(logits, targets, smooth=1.0)

    # Class 0: (1 + 1) / (7/4 + 1) = 8/11. Class 1: (3/2 + 1) / (9/4 + 1) = 10/13.
    # Loss: 1 - (8/11 + 10/13) / 2 = 36/143.
    assert loss.item() == pytest.approx(36 / 143, abs=1e-6)


def test_dice_excludes_ignored_pixels():
    logits, targets = _two_pixel_case()
    logits.requires_grad_(True)
    changed_logits = logits.detach().clone()
    changed_logits[..., 2] = torch.tensor([-5.0, 7.0]).reshape(1, 2, 1)

    loss = soft_dice_loss(logits, targets)
    loss.backward()
    changed_loss = soft_dice_loss(changed_logits, targets)
    without_pixel = soft_dice_loss(logits.detach()[..., :2], targets[..., :2])

    torch.testing.assert_close(changed_loss, loss.detach())
    torch.testing.assert_close(without_pixel, loss.detach())
    assert torch.all(logits.grad[..., 2] == 0)
    assert torch.all(logits.grad[..., :2] != 0)


def test_dice_near_zero_for_confident_correct_logits():
    targets = torch.tensor([[[0, 1], [2, 1]]])
    logits = 50.0 * F.one_hot(targets, num_classes=3).permute(0, 3, 1, 2).float()  # (B, H, W, C) -> (B, C, H, W)

    assert soft_dice_loss(logits, targets).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_all_ignored_pixels_give_zero_loss():
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    targets = torch.full((2, 4, 5), IGNORE)

    loss = build_loss("cross_entropy_dice", "logits")(logits, targets)
    loss.backward()

    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


def test_masked_cross_entropy_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 7)
    targets = torch.randint(0, 4, (2, 5, 7))
    targets[0, 0, :3] = IGNORE

    expected = F.cross_entropy(logits, targets, ignore_index=IGNORE)

    torch.testing.assert_close(masked_cross_entropy(logits, targets), expected)


def test_cross_entropy_dice_is_sum_of_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 7)
    targets = torch.randint(0, 4, (2, 5, 7))
    targets[1, 2:, 3] = IGNORE

    loss = build_loss("cross_entropy_dice", "logits")(logits, targets)

    expected = F.cross_entropy(logits, targets, ignore_index=IGNORE) + soft_dice_loss(logits, targets)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("name", ["dice", "cross_entropy_dice"])
def test_segmentation_loss_same_for_log_softmax_head(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 5)
    targets = torch.randint(0, 3, (2, 6, 5))

    from_logits = build_loss(name, "logits")(logits, targets)
    from_log_probs = build_loss(name, "log_softmax")(logits.log_softmax(dim=1), targets)

    torch.testing.assert_close(from_log_probs, from_logits)


@pytest.mark.parametrize("name", ["dice", "cross_entropy_dice"])
def test_segmentation_loss_registered(name):
    assert name in LOSSES


@pytest.mark.parametrize("name", ["dice", "cross_entropy_dice"])
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_segmentation_loss_rejects_probability_heads(name, head):
    with pytest.raises(ValueError, match=rf"head '{head}' does not fit loss '{name}': {name} "):
        build_loss(name, head)


def test_segmentation_loss_factory_checks_head():
    with pytest.raises(ValueError, match=r"head 'softmax' does not fit loss 'dice'"):
        LOSSES.build("dice", "softmax")


def test_dice_rejects_out_of_range_targets():
    logits = torch.randn(1, 3, 2, 2)
    targets = torch.tensor([[[0, 1], [3, 254]]])

    with pytest.raises(ValueError, match=r"targets contain class indices \[3, 254\] outside \[0, 3\)"):
        soft_dice_loss(logits, targets)


def test_dice_rejects_float_targets():
    with pytest.raises(TypeError, match=r"class indices in an integer tensor, got dtype torch.float32"):
        soft_dice_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2))


def test_dice_rejects_mismatched_target_shape():
    with pytest.raises(ValueError, match=r"targets of shape \(1, 2, 3\) do not fit logits of shape \(1, 3, 2, 2\)"):
        soft_dice_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))


def test_dice_rejects_negative_smoothing():
    with pytest.raises(ValueError, match=r"smooth must be non-negative, got -1.0"):
        LOSSES.build("dice", "logits", smooth=-1.0)


def test_dice_accepts_uint8_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    targets = torch.randint(0, 3, (2, 4, 4))
    targets[0, 0, 0] = IGNORE

    loss = build_loss("cross_entropy_dice", "logits")(logits, targets.to(torch.uint8))

    torch.testing.assert_close(loss, build_loss("cross_entropy_dice", "logits")(logits, targets))
