"""Tests for the autograd graph walk, its text and figure, the layer table, and one neuron's computation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralab.inspect.figures import small_texts
from neuralab.inspect.graph import autograd_graph, graph_figure, graph_text, reached_parameters
from neuralab.inspect.layers import format_bytes, layer_table, totals
from neuralab.inspect.neuron import following_activation, neuron_computation, parse_neuron
from neuralab.models import build_model
from neuralab.nn import build_loss


def _mlp_loss(model: nn.Module) -> torch.Tensor:
    images = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return build_loss("nll", model.head)(model(images), torch.tensor([1, 7, 3]))


def test_mlp_graph_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[16, 8])

    nodes = autograd_graph(_mlp_loss(model), model)

    leaves = [node for node in nodes if node.name == "AccumulateGrad"]
    names = [name for name, _ in model.named_parameters()]
    assert nodes[0].name == "NllLossBackward0"
    assert sorted(reached_parameters(nodes)) == sorted(names)
    assert len(leaves) == len(names)
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    assert {leaf.parameter: leaf.shape for leaf in leaves} == shapes


def test_graph_leaves_are_the_parameters():
    # Each AccumulateGrad node's .variable must be the parameter object itself, not a copy.
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[4])
    loss = _mlp_loss(model)
    parameters = dict(model.named_parameters())
    found = {}
    pending = [loss.grad_fn]
    while pending:
        function = pending.pop()
        if hasattr(function, "variable"):
            found[id(function.variable)] = function.variable
        pending += [child for child, _ in function.next_functions if child is not None]

    nodes = autograd_graph(loss, model)

    for name in reached_parameters(nodes):
        assert found[id(parameters[name])] is parameters[name]


def test_frozen_parameter_not_reached():
    model = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[4])
    model.hidden[0].weight.requires_grad_(False)

    reached = reached_parameters(autograd_graph(_mlp_loss(model), model))

    assert "hidden.0.weight" not in reached
    assert "hidden.0.bias" in reached


def test_graph_text_marks_repeated_nodes():
    weight = nn.Parameter(torch.ones(2, 2))
    model = nn.Module()
    model.weight = weight
    product = torch.ones(1, 2) @ weight
    loss = (product * product).sum()  # MulBackward0 reaches MmBackward0 twice

    text = graph_text(autograd_graph(loss, model))

    assert text.splitlines()[0] == "SumBackward0 [#0]"
    assert "AccumulateGrad -> weight (2, 2)" in text
    assert "shown above]" in text
    assert text.count("AccumulateGrad") == 1


def test_graph_needs_grad_fn():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        loss = model(torch.ones(1, 2)).sum()

    with pytest.raises(ValueError, match="the loss has no grad_fn"):
        autograd_graph(loss, model)


def test_graph_figure_readable():
    model = build_model("cnn", (1, 28, 28), 10, channels=[4, 8], hidden_size=16)
    loss = F.cross_entropy(model(torch.randn(2, 1, 28, 28)), torch.tensor([0, 1]))

    figure = graph_figure(autograd_graph(loss, model), "cnn")

    assert small_texts(figure) == []
    assert figure.axes[0].get_title() == "cnn"


def test_layer_table_shapes_and_counts():
    model = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[16, 8])
    model.output.weight.requires_grad_(False)

    rows = {row.name: row for row in layer_table(model, torch.zeros(1, 1, 28, 28))}
    count = totals(model)

    assert rows["hidden.0"].output_shape == (1, 16)
    assert rows["hidden.0"].parameters == 784 * 16 + 16
    assert rows["hidden.0"].memory_bytes == (784 * 16 + 16) * 4
    assert rows["hidden.1"].trainable == "-"
    assert rows["output"].trainable == "partly"
    assert count["parameters"] == 784 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10
    assert count["trainable"] == count["parameters"] - 8 * 10
    assert format_bytes(2048) == "2.0 KiB"


def test_neuron_matches_manual_computation():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[6], activation="tanh", head="logits")
    image = torch.randn(1, 1, 28, 28)
    loss_fn = build_loss("cross_entropy", "logits")

    result = neuron_computation(model, image, loss_fn, lambda outputs: outputs.argmax(1), "hidden.0", 2, target=4)

    x = image.flatten()
    weight, bias = model.hidden[0].weight[2].detach(), model.hidden[0].bias[2].item()
    z = (weight * x).sum().item() + bias
    hidden = torch.tanh(model.hidden[0](image.flatten(1)))
    probabilities = model.output(hidden).softmax(dim=1)[0]
    upstream = (probabilities - F.one_hot(torch.tensor(4), 10)) @ model.output.weight[:, 2]
    grad_z = (upstream * (1 - hidden[0, 2] ** 2)).item()  # tanh'(z) = 1 - tanh(z)^2
    assert result["activation"] == "tanh (hidden.1)"
    assert result["pre_activation"] == pytest.approx(z, abs=1e-5)
    assert result["pre_activation_model"] == pytest.approx(z, abs=1e-5)
    assert result["output"] == pytest.approx(torch.tanh(torch.tensor(z)).item(), abs=1e-6)
    assert result["grad_pre_activation"] == pytest.approx(grad_z, abs=1e-6)
    torch.testing.assert_close(torch.tensor(result["grad_weights"]), grad_z * x, rtol=1e-4, atol=1e-7)
    assert result["grad_bias"] == pytest.approx(grad_z, abs=1e-6)
    assert all(parameter.grad is None for parameter in model.parameters())


def test_neuron_errors_name_valid_layers():
    model = build_model("cnn", (1, 28, 28), 10, channels=[4], hidden_size=8)
    image = torch.zeros(1, 1, 28, 28)
    loss_fn = build_loss("cross_entropy", "logits")

    with pytest.raises(ValueError, match=r"'blocks.0.0' is a Conv2d; the model's Linear layers are: hidden, classifier"):
        neuron_computation(model, image, loss_fn, lambda outputs: outputs.argmax(1), "blocks.0.0", 0)
    with pytest.raises(ValueError, match=r"layer 'hidden' has 8 neurons, so the index must be in 0..7; got 8"):
        neuron_computation(model, image, loss_fn, lambda outputs: outputs.argmax(1), "hidden", 8)
    with pytest.raises(ValueError, match=r"the model has no layer 'fc1'; its Linear layers are: hidden, classifier"):
        neuron_computation(model, image, loss_fn, lambda outputs: outputs.argmax(1), "fc1", 0)


def test_following_activation_of_cnn_hidden():
    model = build_model("cnn", (1, 28, 28), 10, channels=[4], hidden_size=8)

    name, module = following_activation(model, "hidden")

    assert name == "relu"
    assert isinstance(module, nn.ReLU)
    assert following_activation(model, "classifier") is None


@pytest.mark.parametrize("text", ["hidden.0", "hidden.0:x", ":3", "hidden.0:-1"])
def test_parse_neuron_rejects(text):
    with pytest.raises(ValueError, match="--neuron expects LAYER:INDEX"):
        parse_neuron(text)
