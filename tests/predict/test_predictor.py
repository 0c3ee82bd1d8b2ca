"""Tests for the Python API: neuralab.load, Predictor.predict on paths, PIL images and tensors, and its errors."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import tiny_run

import neuralab
from neuralab.data.idx import DataFileError
from neuralab.data.sources import MNIST, load_split
from neuralab.predict import Classification, Failure, Predictor
from neuralab.predict.inputs import iter_file_batches, worker_count
from neuralab.predict.predictor import PredictionWarning
from neuralab.predict.preprocess import normalize
from neuralab.training.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return neuralab.load(tiny_run("cnn"))


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split(MNIST, "test")
    return images[:12], labels[:12]


def _photo(digit: torch.Tensor, scale: int = 4) -> Image.Image:
    """Return an MNIST digit as dark ink on light paper, scaled up, off-centre."""
    ink = Image.fromarray(digit.numpy()).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    sheet = Image.new("L", (40 * scale, 36 * scale), 0)
    sheet.paste(ink, (10 * scale, 3 * scale))
    return Image.fromarray(225 - (np.asarray(sheet, dtype=np.float32) * 0.8).astype(np.uint8))


def _save_photos(folder, digits, count: int) -> list:
    paths = []
    for index in range(count):
        path = folder / f"digit{index:02d}.png"
        _photo(digits[0][index]).save(path)
        paths.append(path)
    return paths


def test_load_returns_predictor_with_run_classes(predictor):
    assert isinstance(predictor, Predictor)
    assert predictor.classes == MNIST.classes
    assert predictor.task == "classification"
    assert not predictor.model.training


def test_probabilities_match_model_on_prepared_pixels(predictor, digits):
    result = predictor.predict(digits[0][0], top_k=10)

    inputs = normalize(torch.from_numpy(result.pixels)[None], predictor.preprocessing)
    with torch.no_grad():
        expected = predictor.model(inputs).softmax(dim=1)[0]
    by_class = dict(result.top_k)
    for index, name in enumerate(predictor.classes):
        assert by_class[name] == pytest.approx(float(expected[index]), abs=1e-6)
    assert [value for _, value in result.top_k] == sorted(by_class.values(), reverse=True)
    assert sum(by_class.values()) == pytest.approx(1.0, abs=1e-5)


def test_path_pil_and_tensor_give_same_result(predictor, digits, tmp_path):
    photo = _photo(digits[0][3])
    photo.save(tmp_path / "photo.png")
    tensor = torch.from_numpy(np.asarray(photo).copy())

    from_path = predictor.predict(tmp_path / "photo.png")
    from_image = predictor.predict(photo)
    from_tensor = predictor.predict(tensor)

    assert from_path.top_k == from_image.top_k == from_tensor.top_k
    assert from_path.steps == from_image.steps == from_tensor.steps
    np.testing.assert_array_equal(from_path.pixels, from_tensor.pixels)


def test_batch_matches_one_at_a_time(predictor, digits, tmp_path):
    paths = _save_photos(tmp_path, digits, 5)

    batched = predictor.predict(paths, batch_size=2)
    single = [predictor.predict(path) for path in paths]

    assert [result.source for result in batched] == [str(path) for path in paths]
    for batch_result, single_result in zip(batched, single):
        assert batch_result.label == single_result.label
        for (name, value), (other_name, other_value) in zip(batch_result.top_k, single_result.top_k):
            assert name == other_name
            assert value == pytest.approx(other_value, abs=1e-5)


def test_worker_processes_match_in_process(predictor, digits, tmp_path):
    paths = _save_photos(tmp_path, digits, 6)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        in_process = predictor.predict(paths, batch_size=4, num_workers=0)
        in_workers = predictor.predict(paths, batch_size=4, num_workers=2)
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)

    assert [result.top_k for result in in_workers] == [result.top_k for result in in_process]
    assert [result.steps for result in in_workers] == [result.steps for result in in_process]
    assert threads_after == 2  # the model ran on one thread beside the workers, then the count was restored


def test_folder_and_glob_expand_in_order(predictor, digits, tmp_path):
    paths = _save_photos(tmp_path, digits, 3)

    from_folder = predictor.predict(tmp_path)
    from_glob = predictor.predict(str(tmp_path / "digit*.png"))

    assert [result.source for result in from_folder] == [str(path) for path in paths]
    assert [result.source for result in from_glob] == [str(path) for path in paths]


def test_tensor_batch_gives_one_result_per_image(predictor, digits):
    results = predictor.predict(digits[0][:4, None])  # (4, 28, 28) -> (4, 1, 28, 28)

    assert len(results) == 4
    assert all(isinstance(result, Classification) for result in results)
    assert results[2].source == "<input 2>"


def test_clean_mnist_digits_keep_their_prediction(predictor, digits):
    images, _ = digits
    reference = normalize(images[:, None], predictor.preprocessing)
    with torch.no_grad():
        expected = predictor.model(reference).argmax(dim=1)

    results = predictor.predict(images[:, None])

    agreement = np.mean([result.label == predictor.classes[int(index)] for result, index in zip(results, expected)])
    assert agreement >= 0.9  # re-centring moves some digits by a pixel, which may flip an uncertain one


def test_unreadable_file_is_reported_and_others_predicted(predictor, digits, tmp_path):
    paths = _save_photos(tmp_path, digits, 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")

    results = list(predictor.iter_predict([paths[0], broken, tmp_path / "absent.png", paths[1]]))

    assert [type(result) for result in results] == [Classification, Failure, Failure, Classification]
    assert "broken.jpg: cannot read the image" in results[1].message
    assert "absent.png: image file not found" in results[2].message
    with pytest.raises(DataFileError, match=r"broken\.jpg"):
        predictor.predict([paths[0], broken])


def test_pattern_without_matches_is_a_failure(predictor, tmp_path):
    (result,) = predictor.iter_predict([str(tmp_path / "*.png")])

    assert isinstance(result, Failure)
    assert "no image file matches this pattern" in result.message


def test_directory_without_run_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path}: not a neuralab run directory \(no config.yaml\); pass a "
                       "folder created by `neuralab train`"):
        neuralab.load(tmp_path)


def test_checkpoint_file_outside_run_is_rejected(tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, checkpoint)

    with pytest.raises(ValueError, match=r"model\.pt: not a neuralab run directory but a file; pass the folder"):
        neuralab.load(checkpoint)


def test_file_inside_run_loads_its_run():
    run_dir = tiny_run("cnn")

    predictor = neuralab.load(run_dir / "model.safetensors")

    assert predictor.run_dir == run_dir


def test_foreign_weights_are_rejected(tmp_path):
    from safetensors.torch import save_file

    run_dir = tiny_run("cnn")
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    save_file({"weight": torch.zeros(3)}, str(copy / "model.safetensors"))

    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a neuralab weights file"):
        neuralab.load(copy)


def test_wrong_input_type_raises_type_error(predictor):
    with pytest.raises(TypeError, match=r"cannot predict on a int; pass file paths, PIL images or image tensors"):
        predictor.predict([3])


def test_top_k_must_be_positive(predictor, digits):
    with pytest.raises(ValueError, match=r"top_k \(--top-k\) must be at least 1, got 0"):
        predictor.predict(digits[0][0], top_k=0)


def test_blank_page_warns_of_a_guess(predictor):
    blank = Image.new("L", (60, 60), 235)

    with pytest.warns(PredictionWarning, match=r"<input 0>: no object found in the image, so the predicted class "
                      r"is a guess"):
        result = predictor.predict(blank)

    assert result.no_object


def test_digit_photo_does_not_warn(predictor, digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PredictionWarning)
        result = predictor.predict(_photo(digits[0][0]))

    assert not result.no_object


def test_workers_are_capped_at_the_batches(predictor, digits, tmp_path):
    paths = _save_photos(tmp_path, digits, 3)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when asked for more worker processes than CPUs
        workers = worker_count(len(paths), 64, 1000)
        batches = list(iter_file_batches(paths, predictor.preprocessing, 64, workers, keep_display=False))

    assert workers == 1
    assert [len(batch.items) for batch in batches] == [3]
