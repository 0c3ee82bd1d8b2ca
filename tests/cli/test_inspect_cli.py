"""Tests for `neuralab inspect`: the graph of a trained MLP, and --neuron against the saved weights by hand."""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from neuralab.cli import main
from neuralab.data.sources import MNIST, load_split
from neuralab.training.checkpoint import load_weights

TEST_INDEX = 3  # a test image whose digit is a 0


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_graph_lists_every_parameter(mlp_run, capsys, tmp_path):
    figure = tmp_path / "graph.png"

    status = main(["inspect", str(mlp_run), "--graph-output", str(figure)])

    out = capsys.readouterr().out
    names = list(load_file(str(mlp_run / "model.safetensors")))
    assert status == 0
    assert figure.is_file()
    assert "6 of 6 parameters reached from the loss" in out
    for name in names:
        assert f"AccumulateGrad -> {name} " in out, name
    assert "hidden.0  Linear            (1, 128)" in out


def test_graph_json_leaves(mlp_run, capsys, tmp_path):
    status = main(["inspect", str(mlp_run), "--json", "--graph-output", str(tmp_path / "graph.png")])

    result = _json(capsys)
    leaves = {node["parameter"] for node in result["graph"] if node["name"] == "AccumulateGrad"}
    assert status == 0
    assert leaves == set(load_file(str(mlp_run / "model.safetensors")))
    assert result["totals"]["parameters"] == 109_386


def _write_test_image(tmp_path):
    images, labels = load_split(MNIST, "test")
    path = tmp_path / "digit.png"
    Image.fromarray(images[TEST_INDEX].numpy()).save(path)
    return path, images[TEST_INDEX], int(labels[TEST_INDEX])


def _manual_forward(mlp_run, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Compute the 784-128-64-10 ReLU MLP by hand from model.safetensors and the run's normalization."""
    weights, metadata = load_weights(mlp_run / "model.safetensors")
    preprocessing = metadata["preprocessing"]
    assert preprocessing["mean"] == pytest.approx(MNIST.mean)
    x = (pixels.float().flatten() / 255.0 - preprocessing["mean"]) / preprocessing["std"]
    h1 = torch.relu(weights["hidden.0.weight"] @ x + weights["hidden.0.bias"])
    h2 = torch.relu(weights["hidden.2.weight"] @ h1 + weights["hidden.2.bias"])
    logits = weights["output.weight"] @ h2 + weights["output.bias"]
    return {"x": x, "h1": h1, "h2": h2, "logits": logits, **weights}


def test_neuron_first_layer_by_hand(mlp_run, capsys, tmp_path):
    image, pixels, _ = _write_test_image(tmp_path)
    manual = _manual_forward(mlp_run, pixels)

    status = main(["inspect", str(mlp_run), "--neuron", "hidden.0:5", "--image", str(image), "--json"])

    result = _json(capsys)
    weights, x = manual["hidden.0.weight"][5], manual["x"]
    assert status == 0
    torch.testing.assert_close(torch.tensor(result["inputs"]), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(result["weights"]), weights, rtol=0, atol=0)
    assert result["weighted_sum"] == pytest.approx(float(weights @ x), abs=1e-4)
    assert result["bias"] == pytest.approx(float(manual["hidden.0.bias"][5]), abs=1e-7)
    assert result["pre_activation"] == pytest.approx(float(weights @ x + manual["hidden.0.bias"][5]), abs=1e-4)
    assert result["output"] == pytest.approx(float(manual["h1"][5]), abs=1e-4)
    assert result["activation"] == "relu (hidden.1)"


def test_neuron_output_gradient_by_hand(mlp_run, capsys, tmp_path):
    image, pixels, label = _write_test_image(tmp_path)
    manual = _manual_forward(mlp_run, pixels)

    status = main(["inspect", str(mlp_run), "--neuron", "output:2", "--image", str(image), "--target-class",
                   str(label), "--json"])

    result = _json(capsys)
    probabilities = manual["logits"].softmax(dim=0)
    grad_z = float(probabilities[2] - (1.0 if label == 2 else 0.0))  # d(cross-entropy)/d(logit 2)
    assert status == 0
    assert result["target"] == label
    assert result["loss"] == pytest.approx(float(F.cross_entropy(manual["logits"][None], torch.tensor([label]))),
                                           abs=1e-5)
    assert result["activation"] == "none"
    assert result["output"] == pytest.approx(float(manual["logits"][2]), abs=1e-4)
    assert result["grad_pre_activation"] == pytest.approx(grad_z, abs=1e-6)
    torch.testing.assert_close(torch.tensor(result["grad_weights"]), grad_z * manual["h2"], rtol=1e-4, atol=1e-7)
    assert result["grad_bias"] == pytest.approx(grad_z, abs=1e-6)


def test_neuron_printed_steps(mlp_run, capsys):
    status = main(["inspect", str(mlp_run), "--neuron", "hidden.2:0"])

    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("neuron hidden.2:0 on test image 0 (true class 7): 128 inputs x_i, 128 weights w_i")
    for line in ("weighted sum   sum_i w_i * x_i =", "bias           b               =",
                 "pre-activation z = sum + b     =", "activation     relu (hidden.3): output", "  dL/dz   =",
                 "  dL/dw_i = dL/dz * x_i for every input"):
        assert line in out, line


@pytest.mark.parametrize(("arguments", "message"), [
    (["--neuron", "hidden.1:0"], "'hidden.1' is a ReLU; the model's Linear layers are: hidden.0, hidden.2, output"),
    (["--neuron", "output:10"], "layer 'output' has 10 neurons, so the index must be in 0..9; got 10"),
    (["--neuron", "output"], "--neuron expects LAYER:INDEX"),
    (["--image", "x.png"], "--image and --target-class apply only with --neuron LAYER:INDEX"),
    (["--neuron", "output:0", "--target-class", "12"], "--target-class must be in 0..9, got 12"),
    (["--neuron", "output:0", "--image", "missing.png"], "missing.png: image file not found"),
])
def test_inspect_errors(mlp_run, capsys, tmp_path, arguments, message):
    status = main(["inspect", str(mlp_run), *arguments])

    assert status == 2
    assert message in capsys.readouterr().err


def test_inspect_unknown_target(capsys):
    status = main(["inspect", "no-such-recipe"])

    err = capsys.readouterr().err
    assert status == 2
    assert "'no-such-recipe' is neither a run directory nor a recipe" in err
    assert "mnist-mlp-tutorial" in err


def test_inspect_recipe_untrained(capsys, tmp_path):
    status = main(["inspect", "mnist-cnn", "--graph-output", str(tmp_path / "cnn.png")])

    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("cnn (untrained), input (1, 1, 28, 28), 10 classes")
    assert "parameters reached from the loss" in out
    assert (tmp_path / "cnn.png").is_file()
