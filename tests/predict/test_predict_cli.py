"""Tests for `neuralab predict`: table, JSON and CSV output, saved inputs, skipped files and exit statuses."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from predict_helpers import photo_digits, tiny_run

import neuralab
from neuralab.cli import main
from neuralab.data.sources import MNIST, load_split


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three photo-like digits (dark on light, scaled up 3x), as PNG, JPEG and RGBA PNG."""
    folder = tmp_path_factory.mktemp("photos")
    images, _ = load_split(MNIST, "test")
    paths = []
    for index, (suffix, mode) in enumerate([("png", "L"), ("jpg", "RGB"), ("png", "RGBA")]):
        ink = Image.fromarray(images[index].numpy()).resize((84, 84), Image.Resampling.BICUBIC)
        photo = Image.fromarray(230 - (np.asarray(ink, dtype=np.float32) * 0.8).astype(np.uint8)).convert(mode)
        path = folder / f"photo{index}.{suffix}"
        photo.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def runs() -> dict:
    """The tiny runs, trained before any test captures the output (training prints its progress)."""
    return {kind: tiny_run(kind) for kind in ("mlp", "cnn")}


def _error_lines(capsys) -> list[str]:
    return _lines(capsys.readouterr().err)


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def test_table_lists_top_classes_and_steps(runs, photos, capsys):
    status = main(["predict", str(runs["cnn"]), *map(str, photos)])

    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert lines[0].split() == ["file", "class", "top", "3", "preprocessing"]
    assert len(lines) == 1 + len(photos)
    assert lines[1].split()[0].endswith(photos[0].name)
    assert "inverted (light background)" in lines[1]
    assert "fit into 20x20, centred by mass" in lines[3]


def test_json_matches_python_api(runs, photos, capsys):
    status = main(["predict", str(runs["cnn"]), *map(str, photos), "--format", "json", "--top-k", "4"])

    rows = json.loads(capsys.readouterr().out)
    expected = neuralab.load(runs["cnn"]).predict(photos, top_k=4)
    assert status == 0
    assert [row["file"] for row in rows] == [str(path) for path in photos]
    for row, result in zip(rows, expected):
        assert row["class"] == result.label
        assert [(entry["class"], entry["probability"]) for entry in row["top_k"]] == list(result.top_k)
        assert row["preprocessing"] == list(result.steps)
        assert row["height"] == 84
        assert row["width"] == 84


def test_csv_has_one_column_pair_per_rank(runs, photos, capsys):
    status = main(["predict", str(runs["mlp"]), *map(str, photos), "--format", "csv", "--top-k", "2"])

    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert status == 0
    assert rows[0] == ["file", "height", "width", "class_1", "probability_1", "class_2", "probability_2",
                       "preprocessing"]
    assert len(rows) == 1 + len(photos)
    assert float(rows[1][4]) >= float(rows[1][6])


def test_photo_digit_files_are_all_predicted(runs, tmp_path, capsys):
    written = photo_digits().write_photo_digits(tmp_path, count=5, seed=2)

    status = main(["predict", str(runs["cnn"]), str(tmp_path), "--format", "json"])

    rows = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [row["file"] for row in rows] == [str(path) for path, _ in written]
    for row in rows:
        assert "inverted (light background)" in row["preprocessing"]
        assert any(step.startswith("cropped to") for step in row["preprocessing"])
    assert any(step.startswith("EXIF orientation") for row in rows for step in row["preprocessing"])
    assert any("transparency composited on white" in row["preprocessing"] for row in rows)


def test_save_inputs_writes_what_the_model_saw(runs, photos, tmp_path, capsys):
    status = main(["predict", str(runs["cnn"]), str(photos[1]), "--save-inputs", str(tmp_path / "seen")])

    saved = np.asarray(Image.open(tmp_path / "seen" / "photo1.png"))
    expected = neuralab.load(runs["cnn"]).predict(photos[1]).pixels[0]
    assert status == 0
    assert saved.shape == (28, 28)
    np.testing.assert_array_equal(saved, expected)


def test_unreadable_file_is_named_and_others_predicted(runs, photos, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")

    status = main(["predict", str(runs["cnn"]), str(photos[0]), str(broken), str(photos[2]),
                   "--format", "json"])

    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    errors = captured.err.strip().splitlines()
    assert status == 1
    assert [row["file"] for row in rows] == [str(photos[0]), str(photos[2])]
    assert errors[0].startswith(f"neuralab predict: warning: {broken}: cannot read the image")
    assert errors[0].endswith("; skipped")
    assert errors[1] == "neuralab predict: 1 input(s) skipped, 2 predicted"


def test_no_readable_file_prints_no_table(runs, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")

    status = main(["predict", str(runs["mlp"]), str(broken)])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.strip().splitlines()[-1] == "neuralab predict: 1 input(s) skipped, 0 predicted"


def test_blank_page_is_predicted_with_a_warning(runs, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("L", (60, 60), 235).save(blank)

    status = main(["predict", str(runs["mlp"]), str(blank)])

    captured = capsys.readouterr()
    assert status == 0
    assert "no object found" in captured.out
    warning = f"neuralab predict: warning: {blank}: no object found in the image, so the predicted class is a guess"
    assert _lines(captured.err) == [warning]


def test_save_inputs_into_a_file_is_rejected(runs, photos, tmp_path, capsys):
    blocker = tmp_path / "inputs"
    blocker.write_text("a file, not a folder")

    status = main(["predict", str(runs["mlp"]), str(photos[0]), "--save-inputs", str(blocker)])

    assert status == 2
    error = f"neuralab predict: error: --save-inputs {blocker}: is a file, not a folder; pass a folder path"
    assert _error_lines(capsys) == [error]
    assert blocker.read_text() == "a file, not a folder"


def test_folder_that_is_not_a_run_is_refused(runs, photos, tmp_path, capsys):
    status = main(["predict", str(tmp_path), str(photos[0])])

    assert status == 2
    assert _error_lines(capsys) == [(f"neuralab predict: error: {tmp_path}: not a neuralab run directory (no "
                                     "config.yaml); pass a folder created by `neuralab train`")]


def test_checkpoint_outside_run_is_refused(runs, photos, tmp_path, capsys):
    checkpoint = tmp_path / "mnist.pt"
    checkpoint.write_bytes(b"weights")

    status = main(["predict", str(checkpoint), str(photos[0])])

    assert status == 2
    assert _error_lines(capsys) == [(f"neuralab predict: error: {checkpoint}: not a neuralab run directory but "
                                     "a file; pass the folder that `neuralab train` created (it contains "
                                     "config.yaml and model.safetensors)")]


def test_negative_workers_are_refused(runs, photos, capsys):
    status = main(["predict", str(runs["mlp"]), str(photos[0]), "--workers", "-1"])

    assert status == 2
    assert _error_lines(capsys) == ["neuralab predict: error: --workers must be 0 or more, got -1"]
