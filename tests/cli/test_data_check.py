"""Tests for `neuralab data check`: contents, problems by file name, exit status; and training on a bad folder."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuralab.cli import main


def _write_image(path: Path, mode: str, size: tuple[int, int] = (4, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colors = {"RGB": (10, 20, 30), "RGBA": (10, 20, 30, 128), "L": 90}
    Image.new(mode, size, colors[mode]).save(path)


def _write_mask(path: Path, values: list[list[int]], palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.array(values, dtype=np.uint8)
    if palette:
        mask = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0, 0, 255] * 253)
    else:
        mask = Image.fromarray(array)
    mask.save(path)


def _folder(root: Path, masks: dict[str, list[list[int]]], modes: dict[str, str] | None = None) -> Path:
    """Write images/<stem>.png (RGB unless `modes` says otherwise) and masks/<stem>.png."""
    modes = modes or {}
    for stem, values in masks.items():
        _write_image(root / "images" / f"{stem}.png", modes.get(stem, "RGB"), size=(len(values[0]), len(values)))
        _write_mask(root / "masks" / f"{stem}.png", values)
    return root


@pytest.fixture
def bad_three_class_folder(tmp_path) -> Path:
    """Three classes listed in classes.txt; mask c.png contains the value 7."""
    root = _folder(tmp_path / "three", {"a": [[0, 1], [2, 0]], "b": [[1, 1], [0, 255]], "c": [[0, 7], [7, 2]]})
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    return root


def test_check_reports_contents(tmp_path, capsys):
    root = _folder(tmp_path / "three", {"a": [[0, 1], [2, 0]], "b": [[1, 1], [0, 2]]})

    status = main(["data", "check", str(root), "--num-classes", "3"])

    output = capsys.readouterr().out
    assert status == 0
    assert "segmentation folder; image/mask pairs: train 2" in output
    assert "classes (3, from --num-classes): 0, 1, 2" in output
    assert "image sizes (height x width): 2x2 (2 images)" in output
    assert "image modes: RGB (2 images)" in output
    assert "mask values: 0 (3 pixels), 1 (3 pixels), 2 (2 pixels)" in output
    assert "no problems found" in output


def test_check_binary_0_255_masks(tmp_path, capsys):
    root = _folder(tmp_path / "binary", {"a": [[0, 255], [255, 0]], "b": [[0, 1], [1, 0]]})

    status = main(["data", "check", str(root), "--num-classes", "2"])

    output = capsys.readouterr().out
    assert status == 0
    assert "warning  masks/a.png: binary mask stored as 0/255; value 255 will be read as class 1" in output
    assert "masks/b.png" not in output
    assert "0 error(s), 1 warning(s)" in output


@pytest.mark.parametrize("use_flag", [True, False], ids=["num-classes-flag", "classes-txt"])
def test_check_out_of_range_value(bad_three_class_folder, capsys, use_flag):
    flags = ["--num-classes", "3"] if use_flag else []

    status = main(["data", "check", str(bad_three_class_folder), *flags])

    output = capsys.readouterr().out
    assert status == 1
    assert ("error    masks/c.png: mask value 7 is out of range for 3 classes "
            "(valid values: 0..2 and 255 for pixels to ignore)") in output
    assert "classes (3, from classes.txt): background, cat, dog" in output
    assert "mask values: 0 (4 pixels), 1 (3 pixels), 2 (2 pixels), 7 (2 pixels), 255 (1 pixel)" in output
    assert "1 error(s), 0 warning(s)" in output


def test_check_mixed_image_modes(tmp_path, capsys):
    masks = {"rgb": [[0, 1], [1, 0]], "alpha": [[0, 1], [1, 0]], "gray": [[0, 1], [1, 0]]}
    root = _folder(tmp_path / "modes", masks, modes={"alpha": "RGBA", "gray": "L"})

    status = main(["data", "check", str(root), "--num-classes", "2"])

    output = capsys.readouterr().out
    assert status == 0
    assert "image modes: L (1 image), RGB (1 image), RGBA (1 image)" in output
    assert "warning  images/alpha.png: image has transparency (mode RGBA); it will be composited on white" in output
    assert ("warning  images/gray.png: grayscale image (mode L) among colour images; it will be converted to RGB "
            "by repeating its channel") in output
    assert "images/rgb.png" not in output


def test_check_unpaired_and_unreadable(tmp_path, capsys):
    root = _folder(tmp_path / "broken", {"a": [[0, 1], [1, 0]]})
    _write_image(root / "images" / "no-mask.png", "RGB", size=(2, 2))
    _write_mask(root / "masks" / "no-image.png", [[0, 0], [0, 0]])
    (root / "images" / "z.png").write_bytes(b"not a png")
    _write_mask(root / "masks" / "z.png", [[0, 0], [0, 0]])

    status = main(["data", "check", str(root), "--num-classes", "2"])

    output = capsys.readouterr().out
    assert status == 1
    assert "error    images/no-mask.png: image has no mask of the same file stem in masks/" in output
    assert "error    masks/no-image.png: mask has no image of the same file stem in images/" in output
    assert "error    images/z.png: cannot read the image" in output


def test_check_classification_folder(tmp_path, capsys):
    root = tmp_path / "shapes"
    _write_image(root / "square" / "a.png", "RGB")
    _write_image(root / "circle" / "b.png", "RGB")
    _write_image(root / "test" / "circle" / "c.png", "RGB")
    _write_image(root / "test" / "star" / "d.png", "RGB")

    status = main(["data", "check", str(root)])

    output = capsys.readouterr().out
    assert status == 1
    assert "classification folder; images: train 2, test 2" in output
    assert "classes (2, from class folders): circle, square" in output
    assert "error    test/star: class folder not among the training classes (circle, square)" in output


def test_check_unknown_class_count(tmp_path, capsys):
    root = _folder(tmp_path / "unknown", {"a": [[0, 9], [9, 0]]})

    status = main(["data", "check", str(root)])

    output = capsys.readouterr().out
    assert status == 0
    assert "classes: unknown (pass --num-classes or write classes.txt)" in output
    assert "mask values: 0 (2 pixels), 9 (2 pixels)" in output
    assert "the number of mask classes is unknown, so mask values are not checked" in output


def test_check_missing_folder(tmp_path, capsys):
    status = main(["data", "check", str(tmp_path / "absent")])

    assert status == 2
    assert "absent: data folder not found" in capsys.readouterr().err


def test_training_bad_folder_stops_before_run(bad_three_class_folder, tmp_path, capsys):
    runs = tmp_path / "runs"

    status = main(["train", "mnist-scenes-unet", "--dataset", "folder", "--data-dir", str(bad_three_class_folder),
                   "--val-size", "0", "--epochs", "1", "--output-dir", str(runs)])

    error = capsys.readouterr().err
    assert status == 2
    assert "c.png: mask value 7 is out of range for 3 classes" in error
    assert not runs.exists() or not any(runs.iterdir())
