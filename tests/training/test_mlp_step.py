"""Tests for MLPStep: autograd's gradients bitwise, the same training either way, and autograd wherever the step does not apply."""

import copy

import pytest
import torch
from torch import nn

from neuralab.data.batches import BatchLoader
from neuralab.models.mlp import MLP
from neuralab.nn import build_loss, build_optimizer
from neuralab.training.engine import Trainer
from neuralab.training.mlp_step import build_mlp_step

CPU = torch.device("cpu")
IN_SHAPE = (3, 5, 7)
NUM_CLASSES = 7


def _mlp(hidden_sizes=(9, 4), activation: str = "relu", head: str = "log_softmax", dropout: float = 0.0) -> MLP:
    torch.manual_seed(0)
    channels, height, width = IN_SHAPE
    return MLP(channels * height * width, list(hidden_sizes), NUM_CLASSES, activation, dropout, head)


def _batch(count: int = 13, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, *IN_SHAPE, generator=generator)
    return images, torch.randint(0, NUM_CLASSES, (count,), generator=generator)


@pytest.mark.parametrize("hidden_sizes", [(9, 4), (5,), ()])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize(("head", "loss_name"), [("log_softmax", "nll"), ("logits", "cross_entropy")])
def test_gradients_equal_autograd_bitwise(hidden_sizes, activation, head, loss_name):
    model = _mlp(hidden_sizes, activation, head)
    twin = copy.deepcopy(model)
    loss_fn = build_loss(loss_name, head)
    images, targets = _batch()

    outputs = model(images)
    loss = loss_fn(outputs, targets)
    loss.backward()
    step_outputs, step_loss = build_mlp_step(twin, loss_fn)(images, targets)

    assert torch.equal(step_outputs, outputs)
    assert torch.equal(step_loss, loss)
    for name, parameter in model.named_parameters():
        assert torch.equal(twin.get_parameter(name).grad, parameter.grad), name


def test_step_replaces_earlier_gradients():
    model = _mlp()
    loss_fn = build_loss("nll", "log_softmax")
    step = build_mlp_step(model, loss_fn)
    step(*_batch(seed=1))
    step(*_batch(seed=2))
    first = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    step(*_batch(seed=2))

    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.grad, first[name]), name


def _train(model: MLP, use_step: bool, epochs: int = 2) -> tuple[list, Trainer]:
    images, targets = _batch(count=50)
    optimizer = build_optimizer("adam", model.parameters(), lr=0.01, fused=True)
    trainer = Trainer(model, build_loss("cross_entropy", "logits"), optimizer, None, CPU)
    assert trainer.mlp_step is not None
    if not use_step:
        trainer.mlp_step = None
    loader = BatchLoader(images, targets, 8, shuffle=True, generator=torch.Generator().manual_seed(0))
    return [trainer.train_epoch(loader, epoch)[:3] for epoch in range(1, epochs + 1)], trainer


def test_trainer_matches_autograd_training():
    direct, autograd = _mlp(head="logits"), _mlp(head="logits")

    direct_metrics, _ = _train(direct, use_step=True)
    autograd_metrics, _ = _train(autograd, use_step=False)

    assert direct_metrics == autograd_metrics
    for name, parameter in autograd.named_parameters():
        assert torch.equal(direct.get_parameter(name), parameter), name


@pytest.mark.parametrize(("model", "loss_name"), [
    (_mlp(dropout=0.2), "nll"),
    (_mlp(activation="gelu"), "nll"),  # its backward needs the input, which the step does not keep
    (_mlp(head="softmax"), "mse"),
    (_mlp(head="logits"), "bce_with_logits"),
    (_mlp(head="logits"), "mse"),
    (nn.Sequential(nn.Flatten(), nn.Linear(105, NUM_CLASSES), nn.LogSoftmax(dim=1)), "nll"),
], ids=["dropout", "gelu", "softmax-head", "bce-with-logits", "mse", "sequential"])
def test_other_models_get_no_step(model, loss_name):
    assert build_mlp_step(model, build_loss(loss_name, getattr(model, "head", "log_softmax"))) is None


def test_float64_or_strided_weights_get_no_step():
    loss_fn = build_loss("nll", "log_softmax")
    strided = _mlp()
    strided.output.weight = nn.Parameter(strided.output.weight.detach().t().contiguous().t())  # column-major

    assert build_mlp_step(_mlp().double(), loss_fn) is None
    assert build_mlp_step(strided, loss_fn) is None


def test_output_without_bias_gets_no_step():
    model = _mlp()
    model.output = nn.Linear(4, NUM_CLASSES, bias=False)

    assert build_mlp_step(model, build_loss("nll", "log_softmax")) is None


def test_bf16_autocast_trains_through_autograd():
    model = _mlp()
    optimizer = build_optimizer("adam", model.parameters(), lr=0.01)
    trainer = Trainer(model, build_loss("nll", "log_softmax"), optimizer, None, CPU, autocast_dtype=torch.bfloat16)
    assert trainer.mlp_step is None


def test_forward_hook_disables_step():
    model = _mlp(head="logits")
    calls = []
    model.hidden[0].register_forward_hook(lambda module, inputs, output: calls.append(len(output)))

    _, trainer = _train(model, use_step=True, epochs=1)

    assert not trainer.mlp_step.usable()
    assert calls == [8] * 6 + [2]  # 50 samples in batches of 8


class _HookOnThirdStep:
    """A reporter that hooks the first hidden layer for the third step only, as layer statistics do."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.calls = []
        self.handle = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        pass

    def batch_done(self, step: int, loss: float) -> None:
        if step == 2:
            self.handle = self.layer.register_forward_hook(lambda module, inputs, output: self.calls.append(step))
        elif step == 3:
            self.handle.remove()

    def epoch_done(self, result) -> None:
        pass


def test_hook_added_mid_epoch_runs():
    model = _mlp(head="logits")
    images, targets = _batch(count=50)
    optimizer = build_optimizer("adam", model.parameters(), lr=0.01)
    trainer = Trainer(model, build_loss("cross_entropy", "logits"), optimizer, None, CPU)
    reporter = _HookOnThirdStep(model.hidden[0])

    trainer.train_epoch(BatchLoader(images, targets, 8, shuffle=False), 1, reporter)

    assert reporter.calls == [2]  # the hook added after step 2 ran once, in step 3
    assert trainer.mlp_step.usable()


def test_cpu_autocast_disables_step():
    step = build_mlp_step(_mlp(), build_loss("nll", "log_softmax"))

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not step.usable()
    assert step.usable()


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_anomaly_mode_disables_step():
    step = build_mlp_step(_mlp(), build_loss("nll", "log_softmax"))

    with torch.autograd.detect_anomaly():
        assert not step.usable()
    assert step.usable()


def test_global_module_hook_disables_step():
    step = build_mlp_step(_mlp(), build_loss("nll", "log_softmax"))

    handle = nn.modules.module.register_module_forward_hook(lambda module, inputs, output: None)
    try:
        assert not step.usable()
    finally:
        handle.remove()
    assert step.usable()


def test_parametrization_disables_step():
    model = _mlp()
    step = build_mlp_step(model, build_loss("nll", "log_softmax"))

    nn.utils.parametrize.register_parametrization(model.hidden[0], "weight", nn.Identity())

    assert not step.usable()


@pytest.mark.parametrize("change", ["frozen", "tensor-hook", "post-accumulate-hook"])
def test_parameter_change_disables_step(change):
    model = _mlp()
    step = build_mlp_step(model, build_loss("nll", "log_softmax"))
    assert step.usable()
    weight = model.output.weight
    if change == "frozen":
        weight.requires_grad_(False)
    elif change == "tensor-hook":
        weight.register_hook(lambda grad: grad)
    else:
        weight.register_post_accumulate_grad_hook(lambda parameter: None)

    assert not step.usable()
