"""Tests for the layer-statistics recorder: values against torch and hand-worked numbers, sampling, files."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from neuralab.data.batches import BatchLoader
from neuralab.inspect.recorder import (
    StatsRecorder,
    activation_modules,
    activation_summary,
    layer_gradient_norms,
    parameter_layers,
    read_stats,
)
from neuralab.models import build_model
from neuralab.training.engine import EpochResult, Trainer
from neuralab.training.reporters import ReporterGroup
from neuralab.training.runs import RunDir

SAMPLES, BATCH = 70, 16  # 5 steps per epoch, the last one short


def test_relu_summary_by_hand():
    outputs = torch.tensor([[0.0, 1.0, 0.0], [0.0, 3.0, 2.0]])  # unit 0 never fires

    mean, std, dead, saturated = activation_summary(outputs, "relu").tolist()

    assert mean == pytest.approx(1.0)
    assert std == pytest.approx(outputs.std().item())
    assert dead == pytest.approx(1 / 3)
    assert math.isnan(saturated)


def test_relu_summary_counts_channels():
    # (B=2, C=2, H=1, W=2): channel 1 is 0 everywhere, channel 0 fires at one position.
    outputs = torch.tensor([[[[0.0, 0.5]], [[0.0, 0.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])

    dead = activation_summary(outputs, "relu")[2].item()

    assert dead == pytest.approx(0.5)


@pytest.mark.parametrize(("kind", "values", "expected"), [
    ("sigmoid", [0.01, 0.5, 0.97, 0.96], 0.75),  # saturated below 0.05 or above 0.95
    ("tanh", [-0.95, 0.0, 0.89, 0.91], 0.5),  # saturated beyond -0.9 or 0.9
])
def test_saturated_fraction_by_hand(kind, values, expected):
    outputs = torch.tensor([values])

    _, _, dead, saturated = activation_summary(outputs, kind).tolist()

    assert saturated == pytest.approx(expected)
    assert math.isnan(dead)


def test_gradient_norms_match_torch():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model(torch.randn(5, 3)).square().sum().backward()

    norms = layer_gradient_norms(parameter_layers(model))

    expected = torch.cat([model[0].weight.grad.flatten(), model[0].bias.grad]).norm().item()
    assert list(norms) == ["0", "2"]
    assert norms["0"] == pytest.approx(expected, rel=1e-6)


def test_layers_and_activations_found():
    model = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[8, 8], activation="sigmoid")

    assert list(parameter_layers(model)) == ["hidden.0", "hidden.2", "output"]
    assert {name: kind for name, (_, kind) in activation_modules(model).items()} == {
        "hidden.1": "sigmoid", "hidden.3": "sigmoid"}


def _trainer(model: nn.Module) -> Trainer:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Trainer(model, nn.CrossEntropyLoss(), optimizer, scheduler, torch.device("cpu"))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(SAMPLES, 1, 4, 4, generator=generator), torch.randint(3, (SAMPLES,), generator=generator)


def _run_epochs(model: nn.Module, recorder: StatsRecorder, epochs: range) -> Trainer:
    trainer = _trainer(model)
    images, targets = _data()
    loader = BatchLoader(images, targets, BATCH, shuffle=False)
    reporter = ReporterGroup(recorder)
    for epoch in epochs:
        reporter.start_epoch(epoch, len(loader))
        trainer.train_epoch(loader, epoch, reporter)
        trainer.evaluate(loader)  # an eval pass between epochs must add nothing
        reporter.epoch_done(EpochResult(epoch, 0.0, 0.0, None, None, 0.1, 1.0, 1.0))
    return trainer


def test_first_row_matches_manual_step(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, hidden_sizes=[6], activation="relu", head="logits")
    reference = copy.deepcopy(model)
    recorder = StatsRecorder(model, RunDir(tmp_path), every=2, optimizer=_trainer(model).optimizer)

    _run_epochs(model, recorder, range(1, 3))

    images, targets = _data()
    hidden = reference.hidden(images[:BATCH].flatten(1))
    F.cross_entropy(reference(images[:BATCH]), targets[:BATCH]).backward()
    first = recorder.rows[0]
    expected_norm = torch.cat([reference.hidden[0].weight.grad.flatten(), reference.hidden[0].bias.grad]).norm()
    assert [row["step"] for row in recorder.rows] == [1, 3, 5, 7, 9]
    assert [row["epoch"] for row in recorder.rows] == [1, 1, 1, 2, 2]
    assert first["grad_norm"]["hidden.0"] == pytest.approx(expected_norm.item(), rel=1e-5)
    assert first["activations"]["hidden.1"]["mean"] == pytest.approx(hidden.mean().item(), rel=1e-5)
    assert first["activations"]["hidden.1"]["std"] == pytest.approx(hidden.std().item(), rel=1e-5)
    assert first["lr"] == pytest.approx(0.1)
    assert all(not module._forward_hooks for module in model.modules())


def test_files_written_and_resume_drops_rows(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, hidden_sizes=[6], head="logits")
    start = {key: value.clone() for key, value in model.state_dict().items()}
    run = RunDir(tmp_path)
    recorder = StatsRecorder(model, run, every=1)
    _run_epochs(model, recorder, range(1, 3))
    stats = read_stats(run)
    saved_start = load_file(str(run.start_weights_path))

    resumed = StatsRecorder(model, run, every=1, start_epoch=1)

    assert len(stats["rows"]) == 10
    assert stats["steps_per_epoch"] == 5
    assert stats["layers"] == {"hidden.0": "Linear", "output": "Linear"}
    for key, value in start.items():
        torch.testing.assert_close(saved_start[key], value, rtol=0, atol=0)
    assert [row["epoch"] for row in resumed.rows] == [1] * 5
    assert not torch.equal(load_file(str(run.start_weights_path))["output.weight"], model.output.weight.detach())


def test_every_must_be_positive(tmp_path):
    model = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="stats_every must be a positive number of steps, got 0"):
        StatsRecorder(model, RunDir(tmp_path), every=0)


def test_invalid_stats_file(tmp_path):
    run = RunDir(tmp_path)
    run.stats_path.write_text(json.dumps({"rows": []}), encoding="utf-8")

    with pytest.raises(ValueError, match="not a neuralab statistics file"):
        read_stats(run)
