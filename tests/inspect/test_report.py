"""Tests for the run report: files, sections, self-containment, and the numbers behind its figures."""

import base64
import json
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread

from neuralab.cli import main
from neuralab.inspect.report import NO_STATS_NOTE, class_probabilities, highest_loss_images, read_run, write_report

CLASSIFICATION_SECTIONS = ["overview", "curves", "confusion-matrix", "per-class", "most-confused", "highest-loss",
                           "weight-histograms", "first-layer", "gradient-norms", "activation-statistics",
                           "parameters"]
CLASSIFICATION_FIGURES = ["curves", "confusion_matrix", "per_class", "highest_loss", "weight_histograms",
                          "first_layer", "gradient_norms", "activation_statistics"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_train_writes_report_files(mlp_run):
    html = (mlp_run / "report.html").read_text(encoding="utf-8")

    for name in CLASSIFICATION_FIGURES:
        assert (mlp_run / "report" / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE), name
    for section in CLASSIFICATION_SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert (mlp_run / "stats.json").is_file()
    assert (mlp_run / "weights_start.safetensors").is_file()


def test_report_is_self_contained(mlp_run):
    html = (mlp_run / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'\b(?:src|href)="([^"]*)"', html)
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)

    assert "<script" not in html.lower()
    assert "url(" not in html
    assert not re.search(r"https?://", html)
    assert all(source.startswith(("data:", "#")) for source in sources), sources
    assert len(images) == len(CLASSIFICATION_FIGURES)
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


def test_report_command_rewrites_report(mlp_run, capsys):
    (mlp_run / "report.html").unlink()

    status = main(["report", str(mlp_run)])

    assert status == 0
    assert capsys.readouterr().out.strip() == str(mlp_run / "report.html")
    assert (mlp_run / "report.html").is_file()


def test_report_tables_match_summary(mlp_run):
    html = (mlp_run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((mlp_run / "summary.json").read_text(encoding="utf-8"))
    pair = summary["most_confused"][0]

    assert f"{100 * summary['test_accuracy']:.2f}%" in html
    assert f"<td>{pair['true']}</td><td>{pair['predicted']}</td><td>{pair['count']}</td>" in html
    assert "<td>total</td><td></td><td></td><td>109,386</td>" in html  # 784*128+128 + 128*64+64 + 64*10+10


def test_highest_loss_matches_torch(mlp_run):
    contents = read_run(mlp_run)
    with torch.no_grad():
        logits = contents.model(contents.test.images)
    losses = F.cross_entropy(logits, contents.test.targets, reduction="none")

    worst = highest_loss_images(contents, count=5)

    expected = losses.sort(descending=True)
    assert worst["indices"] == expected.indices[:5].tolist()
    torch.testing.assert_close(torch.tensor(worst["losses"]), expected.values[:5], rtol=1e-5, atol=1e-6)
    probabilities = logits[expected.indices[:5]].softmax(dim=1)
    torch.testing.assert_close(torch.tensor(worst["probabilities"]), probabilities.max(dim=1).values,
                               rtol=1e-5, atol=1e-6)
    assert worst["predictions"] == probabilities.argmax(dim=1).tolist()


@pytest.mark.parametrize("head", ["logits", "log_softmax", "softmax"])
def test_class_probabilities_per_head(head):
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    outputs = {"logits": logits, "log_softmax": logits.log_softmax(1), "softmax": logits.softmax(1)}[head]

    torch.testing.assert_close(class_probabilities(outputs, head), logits.softmax(1))


def test_binary_probabilities_from_one_column():
    logits = torch.tensor([[0.0], [2.0]])

    probabilities = class_probabilities(logits, "logits")

    torch.testing.assert_close(probabilities[:, 1], torch.sigmoid(logits[:, 0]))
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))


def test_figures_are_readable(mlp_run):
    # save_figure rejects text under 8 pt; the saved figures must also be non-blank images.
    for name in CLASSIFICATION_FIGURES:
        pixels = imread(mlp_run / "report" / f"{name}.png")
        assert pixels.std() > 0.01, name


def test_report_without_stats(mlp_run, tmp_path):
    # A run trained before layer statistics were recorded has no stats.json and no start weights.
    run_dir = tmp_path / "old-run"
    shutil.copytree(mlp_run, run_dir)
    (run_dir / "stats.json").unlink()
    (run_dir / "weights_start.safetensors").unlink()

    html = write_report(run_dir).read_text(encoding="utf-8")

    gradient_section = html.split('<section id="gradient-norms">')[1].split("</section>")[0]
    assert NO_STATS_NOTE.split(",")[0] in gradient_section
    assert "<img" not in gradient_section
    assert "Weight and bias histograms" in html
    assert not (run_dir / "report" / "gradient_norms.png").exists()


def test_report_needs_finished_run(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("recipe: mnist-mlp\n", encoding="utf-8")

    status = main(["report", str(tmp_path)])

    assert status == 2
    assert "no final weights; the run has not finished" in capsys.readouterr().err


def test_segmentation_report_sections(tmp_path):
    status = main(["train", "mnist-scenes-unet", "--model", "unet-simple", "--epochs", "1", "--train-scenes", "32",
                   "--val-scenes", "8", "--test-subset", "4", "--batch-size", "8", "--output-dir", str(tmp_path)])

    (run_dir,) = tmp_path.iterdir()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert status == 0
    for section in ("segmentation", "iou", "weight-histograms", "first-layer", "gradient-norms", "parameters"):
        assert f'<section id="{section}">' in html, section
    assert '<section id="confusion-matrix">' not in html
    assert (run_dir / "report" / "segmentation.png").is_file()
    assert "<td>background</td>" in html
