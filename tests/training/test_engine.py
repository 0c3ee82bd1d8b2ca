"""Tests for the Trainer: sample-weighted means, eval mode during evaluation, and the non-finite loss stop."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from neuralab.data.batches import BatchLoader
from neuralab.nn import build_loss
from neuralab.training.engine import NonFiniteLossError, Trainer

CPU = torch.device("cpu")
NUM_CLASSES = 3


def _data(count: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 1, 2, 3, generator=generator)
    targets = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    return images, targets


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, NUM_CLASSES))


def _trainer(model: nn.Module, lr: float = 0.0) -> Trainer:
    # lr 0 leaves the weights unchanged, so a training epoch's mean loss can be compared with one pass.
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Trainer(model, build_loss("cross_entropy", "logits"), optimizer, scheduler, CPU)


def test_evaluate_weights_short_batch():
    images, targets = _data(10)
    model = _model()
    loader = BatchLoader(images, targets, 4, shuffle=False)  # batches of 4, 4 and 2

    result = _trainer(model).evaluate(loader)

    with torch.no_grad():
        logits = model(images)
    expected_loss = F.cross_entropy(logits, targets).item()
    expected_accuracy = (logits.argmax(dim=1) == targets).sum().item() / 10
    assert result.samples == 10
    assert result.loss == pytest.approx(expected_loss, abs=1e-6)
    assert result.accuracy == pytest.approx(expected_accuracy, abs=1e-12)


def test_train_epoch_weights_short_batch():
    images, targets = _data(10)
    model = _model()
    loader = BatchLoader(images, targets, 4, shuffle=True, generator=torch.Generator().manual_seed(0))

    loss, accuracy, samples, seconds = _trainer(model).train_epoch(loader, epoch=1)

    with torch.no_grad():
        logits = model(images)
    assert samples == 10
    assert loss == pytest.approx(F.cross_entropy(logits, targets).item(), abs=1e-6)
    assert accuracy == pytest.approx((logits.argmax(dim=1) == targets).sum().item() / 10, abs=1e-12)
    assert seconds >= 0


def test_train_epoch_changes_weights():
    images, targets = _data(10)
    model = _model()
    before = [parameter.detach().clone() for parameter in model.parameters()]
    loader = BatchLoader(images, targets, 4, shuffle=False)

    _trainer(model, lr=0.1).train_epoch(loader, epoch=1)

    assert model.training
    for old, new in zip(before, model.parameters()):
        assert not torch.equal(old, new)


def test_evaluate_uses_eval_mode():
    images, targets = _data(12)
    model = _model(dropout=0.5)
    model.train()
    trainer = _trainer(model)
    loader = BatchLoader(images, targets, 5, shuffle=False)

    first = trainer.evaluate(loader)
    second = trainer.evaluate(loader)

    model.eval()
    with torch.no_grad():
        expected = F.cross_entropy(model(images), targets).item()
    assert first == second
    assert first.loss == pytest.approx(expected, abs=1e-6)


def test_evaluate_restores_mode():
    images, targets = _data(4)
    model = _model(dropout=0.5)
    trainer = _trainer(model)
    loader = BatchLoader(images, targets, 4, shuffle=False)

    model.train()
    trainer.evaluate(loader)
    stayed_training = model.training
    model.eval()
    trainer.evaluate(loader)

    assert stayed_training
    assert not model.training


def test_nan_loss_names_epoch_and_batch():
    images, targets = _data(12)
    images[5, 0, 0, 0] = float("nan")  # sample 5 sits in the second batch of 4
    loader = BatchLoader(images, targets, 4, shuffle=False)

    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 3, batch 2; training stopped") as caught:
        _trainer(_model(), lr=0.1).train_epoch(loader, epoch=3)

    assert caught.value.epoch == 3
    assert caught.value.batch == 2


def test_binary_threshold_for_one_column():
    trainer = Trainer(_model(), build_loss("bce", "sigmoid"), None, None, CPU, binary_threshold=0.5)

    classes = trainer.classes_of(torch.tensor([[0.2], [0.7], [0.5]]))

    assert classes.tolist() == [0, 1, 0]
