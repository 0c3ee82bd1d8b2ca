"""Tests for `neuralab compare`: variants differ in one key, the vanishing-gradient ratio, table and figure."""

import csv

import pytest
import yaml
from matplotlib.image import imread

from neuralab.cli import main
from neuralab.config import load_recipe
from neuralab.inspect.compare import parse_vary, resolve_key, split_values, variants

# One epoch on 500 training and 100 validation images (5 steps of 100), statistics at every step.
TINY_FLAGS = ["--epochs", "1", "--train-subset", "600", "--val-size", "100", "--test-subset", "200",
              "--batch-size", "100", "--stats-every", "1"]


def _comparison(output_dir):
    (folder,) = output_dir.iterdir()
    with open(folder / "table.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return folder, rows


def test_sigmoid_gradient_vanishes(tmp_path, capsys):
    status = main(["compare", "mnist-mlp", "--vary", "activation=relu,sigmoid", "--hidden-sizes",
                   "64,64,64,64,64,64", *TINY_FLAGS, "--output-dir", str(tmp_path)])

    out = capsys.readouterr().out
    folder, rows = _comparison(tmp_path)
    relu, sigmoid = rows
    ratio = float(sigmoid["grad norm / first variant's"])
    assert status == 0
    assert [row["variant"] for row in rows] == ["activation=relu", "activation=sigmoid"]
    assert ratio == pytest.approx(float(sigmoid["first-layer grad norm, epoch 1"])
                                  / float(relu["first-layer grad norm, epoch 1"]))
    assert ratio < 0.05
    assert "| activation=sigmoid |" in out
    for name in ("relu", "sigmoid"):
        config = yaml.safe_load((folder / f"activation={name}" / "config.yaml").read_text(encoding="utf-8"))
        assert config["model"]["options"] == {"hidden_sizes": [64] * 6, "activation": name, "head": "logits"}
        assert not (folder / f"activation={name}" / "report.html").exists()
    assert (folder / "table.md").read_text(encoding="utf-8").startswith("| variant | train loss |")


def test_three_optimizers_on_one_figure(tmp_path, capsys, monkeypatch):
    drawn = []
    import neuralab.inspect.compare as compare_module

    original = compare_module.comparison_figure

    def recording_figure(results, key, loss):
        figure = original(results, key, loss)
        drawn.append(figure)
        return figure

    monkeypatch.setattr(compare_module, "comparison_figure", recording_figure)
    status = main(["compare", "mnist-mlp", "--vary", "optimizer=sgd,adam,rmsprop", "--scheduler", "none",
                   *TINY_FLAGS, "--output-dir", str(tmp_path)])

    folder, rows = _comparison(tmp_path)
    loss_axes, _, gradient_axes = drawn[0].axes
    training_lines = [line.get_label() for line in loss_axes.get_lines() if line.get_label().endswith("training")]
    assert status == 0
    assert [row["variant"] for row in rows] == ["optimizer=sgd", "optimizer=adam", "optimizer=rmsprop"]
    assert training_lines == ["optimizer=sgd training", "optimizer=adam training", "optimizer=rmsprop training"]
    assert len(gradient_axes.get_lines()) == 3
    assert imread(folder / "curves.png").std() > 0.01
    for row in rows:
        assert float(row["wall time s"]) > 0
    optimizers = [yaml.safe_load((folder / row["variant"] / "config.yaml").read_text(encoding="utf-8"))["optim"]
                  for row in rows]
    assert [optim["optimizer"] for optim in optimizers] == ["sgd", "adam", "rmsprop"]
    assert all({key: value for key, value in optim.items() if key != "optimizer"}
               == {key: value for key, value in optimizers[0].items() if key != "optimizer"} for optim in optimizers)


def test_split_values_keeps_brackets():
    assert split_values("[64,64],[128], 32") == ["[64,64]", "[128]", "32"]


def test_variants_change_one_key():
    base = load_recipe("mnist-mlp")

    planned = variants(base, "hidden_sizes", ["[32,16]", "[8]"])

    assert [variant.config.model.options["hidden_sizes"] for variant in planned] == [[32, 16], [8]]
    assert [variant.label for variant in planned] == ["hidden_sizes=[32,16]", "hidden_sizes=[8]"]
    assert all(variant.config.optim == base.optim and variant.config.train == base.train for variant in planned)


@pytest.mark.parametrize(("key", "expected"), [("optimizer", "optim.optimizer"), ("lr", "optim.lr"),
                                               ("activation", "model.options.activation"),
                                               ("optim.lr", "optim.lr"), ("model", "model.name")])
def test_resolve_key(key, expected):
    assert resolve_key(load_recipe("mnist-mlp"), key) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("optimizer", "--vary expects KEY=V1,V2,... with at least one value"),
    ("optimizer=", "--vary expects KEY=V1,V2,... with at least one value"),
    ("optimizer=sgd,,adam", "--vary expects KEY=V1,V2,... with at least one value"),
    ("optimizer=sgd,sgd", "--vary lists sgd more than once"),
])
def test_parse_vary_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_vary(text)


def test_unknown_key_lists_valid(capsys, tmp_path):
    status = main(["compare", "mnist-mlp", "--vary", "optimiser=sgd,adam", "--output-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert status == 2
    assert "--vary key 'optimiser' is not a configuration field or an option of model 'mlp'" in err
    assert "optimizer" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_value_fails_before_training(capsys, tmp_path):
    status = main(["compare", "mnist-mlp", "--vary", "lr=0.1,fast", "--output-dir", str(tmp_path)])

    assert status == 2
    assert "--vary lr=fast: optim.lr must be float, got 'fast'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_fails_before_training(mnist_dir, capsys, tmp_path):
    status = main(["compare", "mnist-mlp", "--vary", "optimizer=sgd,bogus", "--val-size", "100",
                   "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path / "runs")])

    captured = capsys.readouterr()
    assert status == 2
    assert "unknown optimizer 'bogus'" in captured.err
    assert "train loss" not in captured.out
    assert not (tmp_path / "runs").exists()


def test_second_vary_rejected(capsys, tmp_path):
    status = main(["compare", "mnist-mlp", "--vary", "optimizer=sgd,adam", "--vary", "lr=0.1,0.01",
                   "--output-dir", str(tmp_path)])

    assert status == 2
    assert "compare varies one key at a time" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
