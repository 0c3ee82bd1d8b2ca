"""Tests for the concept figures: PNG files, readable and labelled axes, and the numbers they show."""

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.text import Text

from neuralab.cli import main
from neuralab.inspect import (
    MIN_FONT_PT,
    activation_and_derivative,
    activation_figure,
    cross_entropy_identity,
    loss_figure,
    plot_activations,
    plot_losses,
    save_figure,
)
from neuralab.nn import ACTIVATIONS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# name -> torch's functional form, differentiated by the tests independently of the figure code
FUNCTIONALS = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "leaky_relu": lambda x: F.leaky_relu(x, negative_slope=0.01),
    "gelu": F.gelu,
    "silu": F.silu,
    "identity": lambda x: x,
}


@pytest.fixture(scope="module")
def activations():
    return activation_figure()


@pytest.fixture(scope="module")
def losses():
    return loss_figure()


@pytest.fixture(params=["activations", "losses"])
def figure(request) -> Figure:
    figure, _ = request.getfixturevalue(request.param)
    return figure


def _autograd_derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_()
    (derivative,) = torch.autograd.grad(FUNCTIONALS[name](x).sum(), x)
    return derivative


def _assert_png(path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = imread(path).shape
    assert height > 100
    assert width > 100


def _legend_texts(axes) -> list[str]:
    legend = axes.get_legend()
    return [] if legend is None else [text.get_text() for text in legend.get_texts()]


def test_plot_activations_writes_png(tmp_path):
    path = tmp_path / "figures" / "activations.png"

    result = plot_activations(path)

    assert result["path"] == path
    _assert_png(path)
    assert sorted(item.name for item in path.parent.iterdir()) == ["activations.png"]  # no temporary left


def test_plot_losses_writes_png(tmp_path):
    path = tmp_path / "losses.png"

    result = plot_losses(path)

    assert result["path"] == path
    _assert_png(path)
    assert result["max_abs_difference"] < 1e-6


def test_every_axes_labelled(figure):
    for axes in figure.get_axes():
        assert axes.get_title(), "axes without a title"
        assert axes.get_xlabel(), f"{axes.get_title()}: no x label"
        assert axes.get_ylabel(), f"{axes.get_title()}: no y label"


def test_axes_with_several_lines_have_legend(figure):
    for axes in figure.get_axes():
        handles, _ = axes.get_legend_handles_labels()
        if len(handles) > 1:
            assert axes.get_legend() is not None, f"{axes.get_title()}: {len(handles)} labelled lines, no legend"


def test_text_at_least_minimum_size(figure):
    figure.draw_without_rendering()  # creates the tick labels
    texts = [text for text in figure.findobj(Text) if text.get_visible() and text.get_text()]

    assert len(texts) > 20
    for text in texts:
        assert text.get_fontsize() >= MIN_FONT_PT, f"{text.get_text()!r} is {text.get_fontsize()} pt"


def test_figure_covers_every_activation(activations):
    figure, result = activations

    assert set(result["derivatives"]) == set(ACTIVATIONS.names())
    assert result["x"][0].item() == -6.0
    assert result["x"][-1].item() == 6.0
    titles = {axes.get_title() for axes in figure.get_axes()}
    assert set(ACTIVATIONS.names()) <= titles


@pytest.mark.parametrize("name", sorted(FUNCTIONALS))
def test_derivative_curve_matches_autograd(activations, name):
    _, result = activations
    x = result["x"]
    points = torch.tensor([0, 300, 500, 599, 600, 601, 700, 900, 1200])  # x = -6, -3, -1, -0.01, 0, 0.01, 1, 3, 6

    expected = _autograd_derivative(name, x[points])

    torch.testing.assert_close(result["derivatives"][name][points], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(result["outputs"][name][points], FUNCTIONALS[name](x[points]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, x, expected", [
    ("sigmoid", 0.0, 0.25),
    ("tanh", 0.0, 1.0),
    ("relu", -1.0, 0.0),
    ("relu", 1.0, 1.0),
    ("leaky_relu", -1.0, 0.01),
    ("identity", -3.0, 1.0),
])
def test_derivative_hand_values(activations, name, x, expected):
    _, result = activations
    nearest = (result["x"] - x).abs().argmin()

    _, derivative = activation_and_derivative(name, torch.tensor([x]))

    assert derivative.item() == pytest.approx(expected, abs=1e-6)
    assert result["derivatives"][name][nearest].item() == pytest.approx(expected, abs=1e-6)


def test_saturation_and_dead_region_marked(activations):
    figure, _ = activations
    legends = {axes.get_title(): _legend_texts(axes) for axes in figure.get_axes()}

    assert any(text.startswith("dead") for text in legends["relu"])
    assert any(text.startswith("saturated") for text in legends["sigmoid"])
    assert any(text.startswith("saturated") for text in legends["tanh"])


def test_saturated_derivatives_near_zero(activations):
    _, result = activations

    for name in ("sigmoid", "tanh"):
        ends = result["derivatives"][name][[0, -1]]
        assert ends.abs().max().item() < 3e-3, name
    assert result["derivatives"]["relu"][result["x"] < 0].abs().max().item() == 0.0


def test_log_softmax_nll_equals_cross_entropy(losses):
    figure, result = losses
    texts = [text.get_text() for text in figure.findobj(Text)]

    assert result["max_abs_difference"] < 1e-6
    assert f"max |difference| = {result['max_abs_difference']:.1e}" in texts


def test_cross_entropy_identity_other_seed():
    identity = cross_entropy_identity(num_samples=33, num_classes=7, seed=5)

    assert identity["cross_entropy"].shape == (33,)
    assert identity["max_abs_difference"] < 1e-6
    torch.testing.assert_close(identity["nll_of_log_softmax"], identity["cross_entropy"], rtol=0, atol=1e-6)


def test_bce_and_cross_entropy_curves_agree(losses):
    _, result = losses

    # Both curves are -log p of the true class, so only float32 rounding separates them (4.8e-7 seen).
    assert result["bce_cross_entropy_max_difference"] < 1e-5


def test_save_figure_rejects_other_suffix(tmp_path):
    figure = Figure()

    with pytest.raises(ValueError, match=r"expected a file name ending in \.png, got suffix '\.jpg'"):
        save_figure(figure, tmp_path / "figure.jpg")
    assert list(tmp_path.iterdir()) == []


def test_save_figure_rejects_small_text(tmp_path):
    figure = Figure()
    figure.text(0.5, 0.5, "tiny", fontsize=6)

    with pytest.raises(ValueError, match=r"1 texts are smaller than the 8 pt minimum: 'tiny' at 6 pt"):
        save_figure(figure, tmp_path / "figure.png")
    assert list(tmp_path.iterdir()) == []


def test_cli_plot_activations_output(tmp_path, capsys):
    path = tmp_path / "out" / "act.png"

    status = main(["plot", "activations", "--output", str(path)])

    assert status == 0
    _assert_png(path)
    assert capsys.readouterr().out.strip() == str(path)


def test_cli_plot_losses_default_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    status = main(["plot", "losses"])

    assert status == 0
    _assert_png(tmp_path / "plots" / "losses.png")
    assert capsys.readouterr().out.strip() == "plots/losses.png"


def test_cli_plot_rejects_jpeg(tmp_path, capsys):
    status = main(["plot", "losses", "--output", str(tmp_path / "losses.jpg")])

    assert status == 2
    assert "expected a file name ending in .png" in capsys.readouterr().err
