"""Tests for `neuralab export`: ONNX and pt2 files of the MLP, CNN and U-Net match PyTorch, carry metadata."""

import json
import sys

import numpy as np
import pytest
import torch
from predict_helpers import tiny_run

from neuralab.cli import main
from neuralab.predict import export
from neuralab.predict.export import ExportCheckError, ExportedModel, MissingExtraError, export_run
from neuralab.training.inference import load_model

onnx = pytest.importorskip("onnx", reason="ONNX export tests need the export extra: pip install 'neuralab[export]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export tests need the export extra")

TOLERANCE = 1e-4
# (kind, input sizes the exported file is checked on): a U-Net takes multiples of 4 here (two
# poolings), the smallest being 8 (two multiples).
SIZES = {"mlp": [(28, 28)], "cnn": [(28, 28)], "unet": [(64, 64), (36, 92), (8, 8), (8, 12)]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Return a function giving (path, report) of the tiny run `kind` exported as `format`, exported once."""
    folder = tmp_path_factory.mktemp("exports")
    cache = {}

    def get(kind: str, format: str):
        if (kind, format) not in cache:
            path = folder / f"{kind}.{format}"
            cache[kind, format] = path, export_run(tiny_run(kind), format, path)
        return cache[kind, format]

    return get


def _load_exported(path):
    """Return a function running the file at `path` directly with onnxruntime or torch.export.load."""
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    module = torch.export.load(str(path)).module()
    return lambda images: module(images).detach().numpy()


@pytest.mark.parametrize("format", ["onnx", "pt2"])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "unet"])
def test_export_matches_pytorch(kind, format, exported):
    run_dir = tiny_run(kind)

    path, report = exported(kind, format)

    run_file = _load_exported(path)
    model, _, _ = load_model(run_dir)
    generator = torch.Generator().manual_seed(5)
    assert report.path == path
    checked_sizes = list(dict.fromkeys(shape[2:] for shape, _ in report.differences))
    assert [shape[0] for shape, _ in report.differences] == [1, 7] * len(checked_sizes)
    if kind == "unet":
        assert (8, 12) in checked_sizes  # the smallest size the file accepts is checked at export
    assert report.max_difference <= TOLERANCE
    for height, width in SIZES[kind]:
        for batch_size in (1, 7):
            images = torch.randn(batch_size, 1, height, width, generator=generator)
            outputs = run_file(images)
            with torch.no_grad():
                expected = model.eval()(images).numpy()
            assert outputs.shape == expected.shape
            np.testing.assert_allclose(outputs, expected, rtol=0, atol=TOLERANCE)


def test_onnx_file_is_self_contained_with_metadata(exported):
    path, _ = exported("cnn", "onnx")

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    stored = {prop.key: json.loads(prop.value) for prop in model.metadata_props}
    assert not any(onnx.external_data_helper.uses_external_data(tensor) for tensor in model.graph.initializer)
    assert not list(path.parent.glob("*.data"))
    assert stored["classes"] == [str(digit) for digit in range(10)]
    assert stored["preprocessing"]["dataset"] == "mnist"
    assert stored["preprocessing"]["mean"] == pytest.approx(0.1307)
    assert stored["input"]["shape"] == ["batch", 1, 28, 28]


def test_pt2_file_carries_metadata(exported):
    path, _ = exported("unet", "pt2")

    extra_files = {export.METADATA_FILE: ""}
    torch.export.load(str(path), extra_files=extra_files)
    stored = json.loads(extra_files[export.METADATA_FILE])
    assert stored["classes"][0] == "background"
    assert stored["input"]["height_width_multiple_of"] == 4
    assert stored["input"]["min_height_width"] == 8
    assert stored["task"] == "segmentation"


@pytest.mark.parametrize("format", ["onnx", "pt2"])
def test_unet_export_rejects_sizes_off_the_multiple(exported, format):
    model = ExportedModel.load(exported("unet", format)[0])

    with pytest.raises(ValueError, match=r"input height and width must be multiples of 4 and at least 8, got "
                       r"65x97; pad the image at the bottom and right to 68x100"):
        model(np.zeros((1, 1, 65, 97), dtype=np.float32))
    assert model(np.zeros((2, 1, 68, 100), dtype=np.float32)).shape == (2, 11, 68, 100)


@pytest.mark.parametrize("format", ["onnx", "pt2"])
def test_unet_export_rejects_one_multiple(exported, format):
    model = ExportedModel.load(exported("unet", format)[0])

    with pytest.raises(ValueError, match=r"at least 8, got 4x12; pad the image at the bottom and right to 8x12"):
        model(np.zeros((1, 1, 4, 12), dtype=np.float32))
    assert model(np.zeros((1, 1, 8, 12), dtype=np.float32)).shape == (1, 11, 8, 12)


def test_output_that_is_a_folder_is_rejected_first(tmp_path):
    folder = tmp_path / "model.pt2"
    folder.mkdir()

    with pytest.raises(ValueError, match=r"--output .*model.pt2: is a folder; pass a file path, e.g. --output "):
        export_run(tiny_run("mlp"), "pt2", folder)

    assert list(folder.iterdir()) == []


def test_output_inside_a_file_is_rejected(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")

    with pytest.raises(ValueError, match=r"cannot create the folder .*blocker \(File exists\); pass a path"):
        export_run(tiny_run("mlp"), "pt2", blocker / "model.pt2")

    assert blocker.read_text() == "not a folder"


def test_classifier_export_rejects_other_sizes(exported):
    model = ExportedModel.load(exported("mlp", "pt2")[0])

    with pytest.raises(ValueError, match=r"input height and width must be 28x28, got 32x32"):
        model(np.zeros((1, 1, 32, 32), dtype=np.float32))


def test_mismatch_fails_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # every difference, even 0, is now too large
    path = tmp_path / "model.pt2"

    with pytest.raises(ExportCheckError, match=r"outputs differ from PyTorch by up to .* more than -1; no file"):
        export_run(tiny_run("mlp"), "pt2", path)

    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_packages_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError

    with pytest.raises(MissingExtraError, match=r"onnxscript is not installed; install them with "
                       r"`pip install 'neuralab\[export\]'`, or use --format pt2"):
        export.require_onnx()


def test_cli_export_prints_differences(tmp_path, capsys):
    path = tmp_path / "mlp.pt2"

    status = main(["export", str(tiny_run("mlp")), "--format", "pt2", "--output", str(path)])

    out = capsys.readouterr().out
    assert status == 0
    assert "input 1x1x28x28" in out
    assert "input 7x1x28x28" in out
    assert f"wrote {path}" in out


def test_cli_export_rejects_non_run(tmp_path, capsys):
    status = main(["export", str(tmp_path), "--format", "onnx"])

    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [(f"neuralab export: error: {tmp_path}: not a neuralab run directory (no config.yaml); pass a "
                    "folder created by `neuralab train`")]


def test_cli_export_reports_missing_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)

    status = main(["export", str(tiny_run("mlp")), "--format", "onnx", "--output", str(tmp_path / "m.onnx")])

    assert status == 2
    assert "onnxruntime is not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
