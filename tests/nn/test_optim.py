"""Tests for the named optimizers and learning-rate schedulers, against torch's own classes."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

from neuralab.nn import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler

STEPS = 5


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        inputs = torch.randn(8, 6, generator=generator)
        targets = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()


# (name, options passed to build_optimizer, the same optimizer built directly with torch)
OPTIMIZER_CASES = [
    ("sgd", {"lr": 0.1}, lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3)),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    ("adam", {"lr": 0.01, "weight_decay": 1e-2}, lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2)),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}, lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5}, lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5)),
    # The fused single-kernel versions, which training uses on CPU and CUDA (RMSprop has none).
    ("sgd", {"lr": 0.1, "momentum": 0.9, "fused": True},
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, fused=True)),
    ("adam", {"lr": 0.01, "fused": True}, lambda p: torch.optim.Adam(p, lr=0.01, fused=True)),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1, "fused": True},
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, fused=True)),
    ("rmsprop", {"lr": 0.01, "fused": True}, lambda p: torch.optim.RMSprop(p, lr=0.01)),
]


@pytest.mark.parametrize(("name", "options", "reference"), OPTIMIZER_CASES,
                         ids=[f"{name}-{index}" for index, (name, _, _) in enumerate(OPTIMIZER_CASES)])
def test_optimizer_steps_match_torch(name, options, reference):
    ours = _tiny_model()
    theirs = copy.deepcopy(ours)

    _train(ours, build_optimizer(name, ours.parameters(), **options))
    _train(theirs, reference(theirs.parameters()))

    for (key, mine), other in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(mine, other), f"{name}: parameter {key} differs from torch's optimizer"
    assert not torch.equal(ours[0].weight, _tiny_model()[0].weight)


def test_every_optimizer_has_case():
    assert {name for name, _, _ in OPTIMIZER_CASES} == set(OPTIMIZERS.names())


def test_fused_adam_close_to_default():
    fused = _tiny_model()
    default = copy.deepcopy(fused)

    _train(fused, build_optimizer("adam", fused.parameters(), lr=0.01, fused=True))
    _train(default, build_optimizer("adam", default.parameters(), lr=0.01))

    for (key, mine), other in zip(fused.state_dict().items(), default.state_dict().values()):
        torch.testing.assert_close(mine, other, rtol=0, atol=1e-6, msg=f"parameter {key}")


def test_adam_ignores_momentum():
    model = _tiny_model()

    optimizer = build_optimizer("adam", model.parameters(), lr=0.01, momentum=0.9)

    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf])
def test_nonpositive_lr_rejected(lr):
    with pytest.raises(ValueError, match=f"learning rate must be a positive number, got lr={lr}"):
        build_optimizer("sgd", _tiny_model().parameters(), lr=lr)


@pytest.mark.parametrize(("options", "message"), [
    ({"momentum": 1.5}, "momentum must be in \\[0, 1\\), got 1.5; set --momentum"),
    ({"momentum": -0.1}, "momentum must be in \\[0, 1\\), got -0.1; set --momentum"),
    ({"weight_decay": -1.0}, "weight decay must be zero or positive, got -1.0; set --weight-decay"),
])
def test_out_of_range_optimizer_options_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer("sgd", _tiny_model().parameters(), lr=0.1, **options)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("step", {"gamma": 0.0}, "gamma must be in \\(0, 1\\], got 0.0; set --gamma"),
    ("step", {"gamma": 1.5}, "gamma must be in \\(0, 1\\], got 1.5; set --gamma"),
    ("step", {"step_epochs": 0.0}, "step_epochs must be positive, got 0.0; set --step-epochs"),
    ("one_cycle", {"warmup_fraction": 2.0}, "warmup_fraction must be in \\(0, 1\\), got 2.0; set --warmup-fraction"),
])
def test_out_of_range_schedule_options_rejected(name, options, message):
    optimizer = torch.optim.SGD(_tiny_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        build_scheduler(name, optimizer, steps_per_epoch=10, epochs=2, **options)


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0, got momentum=0.0"):
        build_optimizer("sgd", _tiny_model().parameters(), lr=0.1, nesterov=True)


def test_unknown_optimizer_lists_names():
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; valid names: adam, adamw, rmsprop, sgd"):
        build_optimizer("lbfgs", _tiny_model().parameters(), lr=0.1)


def _lr_sequence(name: str, lr: float, steps_per_epoch: int, epochs: int, **options: float) -> list[float]:
    """Return the learning rate used by each of the run's optimizer steps."""
    optimizer = build_optimizer("adam", _tiny_model().parameters(), lr=lr)
    scheduler = build_scheduler(name, optimizer, steps_per_epoch, epochs, **options)
    rates = []
    for _ in range(steps_per_epoch * epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:  # "none" builds no scheduler
            scheduler.step()
    return rates


def test_constant_schedule():
    rates = _lr_sequence("none", 0.01, steps_per_epoch=4, epochs=3)

    assert rates == [0.01] * 12


def test_step_schedule_by_hand():
    # 1.5 epochs of 4 steps: the rate halves after every 6 steps.
    rates = _lr_sequence("step", 0.08, steps_per_epoch=4, epochs=3, step_epochs=1.5, gamma=0.5)

    expected = [0.08] * 6 + [0.04] * 6
    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_cosine_schedule_by_hand():
    total = 12
    rates = _lr_sequence("cosine", 0.01, steps_per_epoch=4, epochs=3)

    expected = [0.01 * (1 + math.cos(math.pi * step / total)) / 2 for step in range(total)]
    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def _one_cycle_by_hand(max_lr: float, total: int, warmup_fraction: float) -> list[float]:
    """Return Smith's 1cycle rates with torch's defaults: start at max_lr/25, end at max_lr/25/1e4."""
    initial, final = max_lr / 25, max_lr / 25 / 1e4
    warmup_end = warmup_fraction * total - 1  # step at which the peak is reached

    def cosine(start: float, end: float, fraction: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * fraction) + 1)

    rates = []
    for step in range(total):
        if step <= warmup_end:
            rates.append(cosine(initial, max_lr, step / warmup_end))
        else:
            rates.append(cosine(max_lr, final, (step - warmup_end) / (total - 1 - warmup_end)))
    return rates


def test_one_cycle_schedule_by_hand():
    rates = _lr_sequence("one_cycle", 0.02, steps_per_epoch=5, epochs=4, warmup_fraction=0.25)

    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float64),
                               torch.tensor(_one_cycle_by_hand(0.02, 20, 0.25), dtype=torch.float64),
                               rtol=0, atol=1e-12)
    assert rates[0] == pytest.approx(0.02 / 25, abs=1e-12)
    assert rates[4] == pytest.approx(0.02, abs=1e-12)
    assert rates[-1] == pytest.approx(0.02 / 25 / 1e4, abs=1e-12)


def test_one_cycle_matches_torch():
    optimizer = build_optimizer("sgd", _tiny_model().parameters(), lr=0.05)
    reference_optimizer = torch.optim.SGD(_tiny_model().parameters(), lr=0.05)

    ours = build_scheduler("one_cycle", optimizer, 3, 4, warmup_fraction=0.3)
    theirs = lr_scheduler.OneCycleLR(reference_optimizer, max_lr=0.05, total_steps=12, pct_start=0.3,
                                     cycle_momentum=False)

    for _ in range(12):
        assert optimizer.param_groups[0]["lr"] == reference_optimizer.param_groups[0]["lr"]
        optimizer.step()
        reference_optimizer.step()
        ours.step()
        theirs.step()


def test_one_cycle_keeps_betas():
    optimizer = build_optimizer("adamw", _tiny_model().parameters(), lr=0.01)
    scheduler = build_scheduler("one_cycle", optimizer, 3, 2)

    for _ in range(6):
        optimizer.step()
        scheduler.step()

    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)


def test_one_cycle_single_warmup_step():
    # 4 steps with warmup_fraction 0.25 put the peak at step 0.25 * 4 - 1 = 0, the first step.
    rates = _lr_sequence("one_cycle", 0.02, steps_per_epoch=2, epochs=2, warmup_fraction=0.25)

    assert len(rates) == 4
    assert max(rates) == pytest.approx(0.02, abs=1e-12)
    assert rates[-1] == pytest.approx(0.02 / 25 / 1e4, abs=1e-12)


def test_unknown_scheduler_lists_names():
    optimizer = build_optimizer("sgd", _tiny_model().parameters(), lr=0.1)

    with pytest.raises(ValueError, match="unknown scheduler 'linear'; valid names: cosine, none, one_cycle, step"):
        build_scheduler("linear", optimizer, 4, 2)


def test_every_scheduler_tested():
    assert set(SCHEDULERS.names()) == {"none", "step", "cosine", "one_cycle"}
