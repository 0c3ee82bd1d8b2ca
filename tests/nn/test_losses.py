"""Tests for the named losses and the check that a model's head fits its loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from neuralab.nn import LOSSES, build_loss, check_head_fits_loss

# Segmentation losses (dice, cross_entropy_dice) have their own tests.
SEGMENTATION_LOSSES = {"dice", "cross_entropy_dice"}


def test_mse_worked_example():
    # A regression model (the "linear" model has head "logits") predicts one value per sample.
    predictions = torch.tensor([[2.5], [0.0], [2.0], [8.0]])
    targets = torch.tensor([[3.0], [-0.5], [2.0], [7.0]])

    loss = build_loss("mse", "logits")(predictions, targets)

    # (0.5^2 + 0.5^2 + 0^2 + 1^2) / 4 = 1.5 / 4
    assert loss.item() == pytest.approx(0.375, abs=1e-7)


def test_cross_entropy_worked_example():
    logits = torch.tensor([[2.0, -1.0], [-1.0, 3.0], [3.0, 1.0]])
    classes = torch.tensor([0, 1, 0])

    loss = build_loss("cross_entropy", "logits")(logits, classes)

    # Each sample's loss is log(1 + exp(-margin)), margins 3, 4 and 2.
    by_hand = (math.log1p(math.exp(-3)) + math.log1p(math.exp(-4)) + math.log1p(math.exp(-2))) / 3
    torch.testing.assert_close(loss, F.cross_entropy(logits, classes), rtol=0, atol=1e-7)
    assert loss.item() == pytest.approx(by_hand, abs=1e-6)


def test_bce_worked_example():
    probabilities = torch.sigmoid(torch.tensor([0.25, 0.75, 0.1]))
    targets = torch.tensor([0.0, 1.0, 0.0])

    loss = build_loss("bce", "sigmoid")(probabilities, targets)

    torch.testing.assert_close(loss, F.binary_cross_entropy(probabilities, targets), rtol=0, atol=1e-7)


def _class_batch(seed: int = 0, batch: int = 6, num_classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, num_classes, generator=generator) * 2
    targets = torch.randint(0, num_classes, (batch,), generator=generator)
    return logits, targets


def _one_hot(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(targets, num_classes).float()


# (loss, head, how the head turns logits into outputs, torch's reference on (outputs, class targets))
REFERENCES = [
    ("cross_entropy", "logits", lambda z: z, lambda out, y: F.cross_entropy(out, y)),
    ("nll", "log_softmax", lambda z: z.log_softmax(1), lambda out, y: F.nll_loss(out, y)),
    ("bce", "sigmoid", lambda z: z.sigmoid(),
     lambda out, y: F.binary_cross_entropy(out, _one_hot(y, out.shape[1]))),
    ("bce_with_logits", "logits", lambda z: z,
     lambda out, y: F.binary_cross_entropy_with_logits(out, _one_hot(y, out.shape[1]))),
    ("mse", "logits", lambda z: z, lambda out, y: F.mse_loss(out.softmax(1), _one_hot(y, out.shape[1]))),
    ("mse", "log_softmax", lambda z: z.log_softmax(1),
     lambda out, y: F.mse_loss(out.exp(), _one_hot(y, out.shape[1]))),
    ("mse", "softmax", lambda z: z.softmax(1), lambda out, y: F.mse_loss(out, _one_hot(y, out.shape[1]))),
    ("mae", "logits", lambda z: z, lambda out, y: F.l1_loss(out.softmax(1), _one_hot(y, out.shape[1]))),
    ("huber", "logits", lambda z: z,
     lambda out, y: F.huber_loss(out.softmax(1), _one_hot(y, out.shape[1]), delta=1.0)),
]


@pytest.mark.parametrize(("name", "head", "apply_head", "reference"), REFERENCES,
                         ids=[f"{name}-{head}" for name, head, _, _ in REFERENCES])
def test_loss_matches_torch(name, head, apply_head, reference):
    logits, targets = _class_batch()
    outputs = apply_head(logits)

    loss = build_loss(name, head)(outputs, targets)

    torch.testing.assert_close(loss, reference(outputs, targets), rtol=0, atol=1e-7)


def test_every_loss_has_reference():
    covered = {name for name, _, _, _ in REFERENCES}

    assert covered == set(LOSSES.names()) - SEGMENTATION_LOSSES


def test_loss_gradient_matches_torch():
    logits, targets = _class_batch(seed=1)
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()

    build_loss("bce_with_logits", "logits")(ours, targets).backward()
    F.binary_cross_entropy_with_logits(theirs, _one_hot(targets, 5)).backward()

    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-7)


def test_bce_single_column_class_targets():
    # A binary model (head sigmoid, one output column) with class-index targets of shape (B,).
    probabilities = torch.tensor([[0.2], [0.9], [0.6]])
    targets = torch.tensor([0, 1, 0])

    loss = build_loss("bce", "sigmoid")(probabilities, targets)

    expected = F.binary_cross_entropy(probabilities, targets.float().unsqueeze(1))
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("head", "loss"), [
    ("softmax", "cross_entropy"),
    ("logits", "nll"),
    ("logits", "bce"),
    ("sigmoid", "bce_with_logits"),
    ("log_softmax", "bce"),
])
def test_fit_check_rejects_pairing(head, loss):
    with pytest.raises(ValueError, match=f"head '{head}' does not fit loss '{loss}'"):
        check_head_fits_loss(head, loss)


def test_fit_check_message_lists_pairings():
    with pytest.raises(ValueError, match="valid pairings: head 'logits' with cross_entropy"):
        build_loss("nll", "logits")


@pytest.mark.parametrize(("head", "loss"), [
    ("logits", "cross_entropy"),
    ("log_softmax", "nll"),
    ("sigmoid", "bce"),
    ("logits", "bce_with_logits"),
    ("logits", "mse"),
    ("softmax", "mae"),
])
def test_fit_check_accepts_pairing(head, loss):
    check_head_fits_loss(head, loss)

    assert build_loss(loss, head).head == head


def test_unknown_loss_lists_names():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; valid names: bce, bce_with_logits, "
                                         r"cross_entropy, .*mse, nll"):
        build_loss("hinge", "logits")


def test_unknown_head_lists_heads():
    with pytest.raises(ValueError, match="unknown head 'tanh'; valid heads: logits, log_softmax, softmax, sigmoid"):
        check_head_fits_loss("tanh", "mse")
