"""Tests for `neuralab train`, `evaluate`, `list` and `--help`, run in-process on a tiny MNIST folder."""

import gzip
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import write_idx
from neuralab.cli import main

# Metrics that measure time, so they differ between two otherwise identical runs.
TIMING_KEYS = {"seconds", "samples_per_second"}
TRAIN_FLAGS = ["--lr", "--epochs", "--batch-size", "--seed", "--device", "--threads", "--data-dir",
               "--output-dir", "--resume", "--config"]


def _tiny_args(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """Return `train` arguments for 2 epochs of the tutorial recipe on 500 training and 100 validation images.

    The report has its own tests, so these runs skip it.
    """
    return ["train", "mnist-mlp-tutorial", "--epochs", "2", "--val-size", "100", "--no-report",
            "--data-dir", str(data_dir), "--output-dir", str(output_dir), *extra]


def _only_run_dir(output_dir: Path) -> Path:
    runs = list(output_dir.iterdir())
    assert len(runs) == 1, f"expected one run directory in {output_dir}, found {runs}"
    return runs[0]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMING_KEYS} for row in rows]


def _error_line(capsys) -> str:
    """Return the one line a failed command printed on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines}"
    return lines[0]


def test_train_writes_run_dir(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir))

    out = capsys.readouterr().out
    run_dir = _only_run_dir(output_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    rows = _metrics(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    checkpoint = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    weights = load_file(str(run_dir / "model.safetensors"))
    assert status == 0
    assert run_dir.name.startswith("mnist-mlp-tutorial-")
    assert "500 training, 100 validation, 200 test images" in out
    assert "test accuracy" in out
    assert config["train"]["epochs"] == 2
    assert config["data"]["data_dir"] == str(mnist_dir)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert checkpoint["epoch"] == 2
    assert set(weights) == {"hidden.0.weight", "hidden.0.bias", "hidden.2.weight", "hidden.2.bias",
                            "output.weight", "output.bias"}
    assert summary["epochs"] == 2
    assert summary["test_samples"] == 200
    assert 0.3 < summary["test_accuracy"] <= 1.0


def test_same_seed_same_run(mnist_dir, tmp_path):
    first_dir, second_dir, other_dir = tmp_path / "first", tmp_path / "second", tmp_path / "other"

    assert main(_tiny_args(mnist_dir, first_dir)) == 0
    assert main(_tiny_args(mnist_dir, second_dir)) == 0
    assert main(_tiny_args(mnist_dir, other_dir, "--seed", "1")) == 0

    first, second, other = (_only_run_dir(folder) for folder in (first_dir, second_dir, other_dir))
    assert _without_timing(_metrics(first)) == _without_timing(_metrics(second))
    assert _without_timing(_metrics(first)) != _without_timing(_metrics(other))
    first_weights = load_file(str(first / "model.safetensors"))
    second_weights = load_file(str(second / "model.safetensors"))
    for key, value in first_weights.items():
        assert torch.equal(value, second_weights[key]), key


def test_print_config_round_trip(tmp_path, capsys):
    output_dir = tmp_path / "runs"
    config_path = tmp_path / "config.yaml"

    status = main(["train", "mnist-mlp-tutorial", "--lr", "0.01", "--hidden-sizes", "32,16", "--epochs", "3",
                   "--output-dir", str(output_dir), "--print-config"])
    printed = capsys.readouterr().out
    config_path.write_text(printed, encoding="utf-8")
    reloaded_status = main(["train", "--config", str(config_path), "--print-config"])
    reprinted = capsys.readouterr().out

    config = yaml.safe_load(printed)
    assert status == 0
    assert reloaded_status == 0
    assert reprinted == printed
    assert config["recipe"] == "mnist-mlp-tutorial"
    assert config["optim"]["lr"] == 0.01
    assert config["model"]["options"]["hidden_sizes"] == [32, 16]
    assert config["train"]["epochs"] == 3
    assert not output_dir.exists()


def test_config_accepts_exponent_lr(tmp_path, capsys):
    # PyYAML follows YAML 1.1, which reads 1e-3 (no decimal point) as a string. Users still mean a number.
    config_path = tmp_path / "config.yaml"
    config_path.write_text("optim:\n  lr: 1e-3\n", encoding="utf-8")

    status = main(["train", "--config", str(config_path), "--print-config"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert yaml.safe_load(captured.out)["optim"]["lr"] == 0.001


def test_config_recipe_key_selects_recipe(tmp_path, capsys):
    # A partial configuration file that names a recipe starts from that recipe, not from the default one.
    config_path = tmp_path / "config.yaml"
    config_path.write_text("recipe: mnist-mlp-tutorial\ntrain:\n  epochs: 2\n", encoding="utf-8")

    status = main(["train", "--config", str(config_path), "--print-config"])

    config = yaml.safe_load(capsys.readouterr().out)
    assert status == 0
    assert config["recipe"] == "mnist-mlp-tutorial"
    assert config["train"]["epochs"] == 2
    assert config["train"]["loss"] == "nll"
    assert config["optim"]["optimizer"] == "adam"
    assert config["model"]["options"]["head"] == "log_softmax"


def test_evaluate_reproduces_summary(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir)) == 0
    run_dir = _only_run_dir(output_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    capsys.readouterr()

    status = main(["evaluate", str(run_dir), "--json"])
    metrics = json.loads(capsys.readouterr().out)
    table_status = main(["evaluate", str(run_dir)])
    table = capsys.readouterr().out

    assert status == 0
    assert metrics["test_accuracy"] == summary["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(summary["test_loss"], abs=1e-6)
    assert metrics["confusion_matrix"] == summary["confusion_matrix"]
    assert table_status == 0
    assert f"accuracy {100 * summary['test_accuracy']:.2f}%" in table
    assert "confusion matrix" in table


def test_evaluate_unfinished_run(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"
    assert main(_tiny_args(mnist_dir, output_dir, "--epochs", "1")) == 0
    run_dir = _only_run_dir(output_dir)
    (run_dir / "model.safetensors").unlink()
    capsys.readouterr()

    status = main(["evaluate", str(run_dir)])

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith(f"neuralab evaluate: error: {run_dir / 'model.safetensors'}: no final weights")
    assert f"neuralab train --resume {run_dir}" in line


def test_train_without_validation(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir, "--val-size", "0", "--epochs", "1"))

    out = capsys.readouterr().out
    run_dir = _only_run_dir(output_dir)
    rows = _metrics(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert status == 0
    assert "600 training, 0 validation, 200 test images" in out
    assert rows[0]["val_loss"] is None
    assert rows[0]["val_accuracy"] is None
    assert summary["final_val_accuracy"] is None


def test_config_unknown_key_rejected(tmp_path, capsys):
    config_path = tmp_path / "config.yaml"
    config_path.write_text("optim:\n  learning_rate: 0.1\n", encoding="utf-8")
    output_dir = tmp_path / "runs"

    status = main(["train", "--config", str(config_path), "--output-dir", str(output_dir)])

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith(f"neuralab train: error: {config_path}: unknown key optim.learning_rate; valid keys: ")
    assert ", lr, " in line
    assert list(output_dir.glob("*")) == []


def test_config_missing_file_rejected(tmp_path, capsys):
    config_path = tmp_path / "absent.yaml"

    status = main(["train", "--config", str(config_path), "--output-dir", str(tmp_path / "runs")])

    assert status == 2
    assert _error_line(capsys) == f"neuralab train: error: {config_path}: configuration file not found"


def test_truncated_idx_rejected(mnist_dir, tmp_path, capsys):
    images_path = mnist_dir / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images_path.read_bytes())
    images_path.write_bytes(gzip.compress(raw[:-784]))
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir))

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith(f"neuralab train: error: {images_path}: expected 470416 bytes for shape (600, 28, 28)")
    assert "found 469632" in line
    assert list(output_dir.glob("*")) == []


def test_foreign_label_file_rejected(mnist_dir, mnist_slice, tmp_path, capsys):
    labels_path = mnist_dir / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels_path, mnist_slice["test"][1][:199].to(torch.uint8))
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir))

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith(f"neuralab train: error: {labels_path}: expected 200 labels to match")
    assert line.endswith("the label file belongs to another image file")
    assert list(output_dir.glob("*")) == []


def test_unknown_model_rejected(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir, "--model", "nosuch"))

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith("neuralab train: error: unknown model 'nosuch'; valid names: activation-demo, ")
    assert "mlp" in line
    assert list(output_dir.glob("*")) == []


def test_unknown_recipe_rejected(tmp_path, capsys):
    output_dir = tmp_path / "runs"

    status = main(["train", "nosuch-recipe", "--output-dir", str(output_dir)])

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith("neuralab train: error: unknown recipe 'nosuch-recipe'; valid names: ")
    assert "mnist-mlp, mnist-mlp-tutorial" in line
    assert list(output_dir.glob("*")) == []


def test_missing_data_dir_rejected(tmp_path, capsys):
    output_dir = tmp_path / "runs"
    empty = tmp_path / "empty"
    empty.mkdir()

    status = main(_tiny_args(empty, output_dir))

    line = _error_line(capsys)
    assert status == 2
    assert line.startswith("neuralab train: error: mnist: train-images-idx3-ubyte(.gz) not found in ")
    assert str(empty) in line
    assert list(output_dir.glob("*")) == []


def test_diverging_run_stops(mnist_dir, tmp_path, capsys):
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir, "--optimizer", "sgd", "--lr", "1e30"))

    line = _error_line(capsys)
    run_dir = _only_run_dir(output_dir)
    assert status == 1
    assert line.startswith("neuralab train: error: ")
    assert "Lower the learning rate (--lr)" in line
    assert not (run_dir / "checkpoint.pt").exists()
    assert not (run_dir / "model.safetensors").exists()


@pytest.mark.parametrize(("flag", "name", "value"), [("--threads", "threads", "0"), ("--threads", "threads", "-1"),
                                                     ("--stats-every", "stats_every", "0")])
def test_counts_below_one_rejected(mnist_dir, tmp_path, capsys, flag, name, value):
    output_dir = tmp_path / "runs"

    status = main(_tiny_args(mnist_dir, output_dir, flag, value))

    captured = capsys.readouterr()
    assert status == 2, captured.out
    assert captured.err.strip() == f"neuralab train: error: {name} must be at least 1, got {value}"
    assert list(output_dir.glob("*")) == []  # rejected before the run directory is made


def test_model_flag_drops_recipe_options(mnist_dir, tmp_path, capsys):
    # The recipe's options (hidden_sizes, activation, head) belong to "mlp", not to the model chosen by --model.
    output_dir = tmp_path / "runs"

    status = main(["train", "mnist-mlp", "--model", "linear", "--epochs", "1", "--val-size", "100", "--batch-size", "64",
                   "--data-dir", str(mnist_dir), "--output-dir", str(output_dir)])

    assert status == 0, capsys.readouterr().err
    weights = load_file(str(_only_run_dir(output_dir) / "model.safetensors"))
    assert weights["linear.weight"].shape == (10, 784)


def test_list_shows_every_kind(capsys):
    status = main(["list"])

    out = capsys.readouterr().out
    assert status == 0
    for kind, name in [("recipes", "mnist-mlp-tutorial"), ("models", "activation-demo"),
                       ("activations", "leaky_relu"), ("losses", "bce_with_logits"),
                       ("optimizers", "rmsprop"), ("schedulers", "one_cycle")]:
        assert f"{kind}:" in out
        assert f"  {name} " in out
    assert "options: hidden_sizes=(128, 64)" in out


def test_list_one_kind(capsys):
    status = main(["list", "optimizers"])

    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0] == "optimizers:"
    assert "recipes:" not in out
    assert [line.split()[0] for line in out.splitlines()[1:] if line.strip()] == ["adam", "adamw", "rmsprop", "sgd"]


def test_train_help_lists_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])

    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in TRAIN_FLAGS:
        assert flag in out, f"{flag} missing from `neuralab train --help`"


def test_relative_data_dir_stored_absolute(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(mnist_dir.parent)

    status = main(_tiny_args(Path(mnist_dir.name), tmp_path / "runs", "--print-config"))

    config = yaml.safe_load(capsys.readouterr().out)
    assert status == 0
    assert config["data"]["data_dir"] == str(mnist_dir.absolute())
