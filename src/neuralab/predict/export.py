"""Export a run's model to ONNX or to a torch.export program (.pt2), and check the file against PyTorch.

Both formats come from one `torch.export` trace of the model in eval mode with a dynamic batch
dimension. A U-Net pads its input to a multiple of 2**depth, and torch.export turns that padding
into a guard on the input size. So its height and width are declared as multiples of that
factor, and `ExportedModel` rejects other sizes with the padding to apply. The classes, the
preprocessing and the accepted input sizes are stored in the file: ONNX metadata_props (one
JSON value per key) or the pt2 extra file neuralab.json. The export is written to a temporary
file, loaded back (onnxruntime for ONNX) and compared with the PyTorch model on batch sizes 1
and 7, and on a second image size for a U-Net. Only a file within TOLERANCE is kept.
"""

import importlib
import json
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neuralab.predict.predictor import resolve_run_dir
from neuralab.predict.preprocess import Preprocessing
from neuralab.training.inference import load_model
from neuralab.training.runs import RunDir

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4  # largest absolute difference from PyTorch's outputs that an export may show
# torch.export assumes that a dynamic dimension is not 1, so a U-Net's bottleneck, 1/multiple of
# the input, must be at least 2 pixels: the smallest input side is 2 multiples.
MIN_BLOCKS = 2
CHECK_BATCH_SIZES = (1, 7)
# torch.export specializes a dimension whose example size is 0 or 1, so the example batch has 2.
EXAMPLE_BATCH_SIZE = 2
INPUT_NAME = "images"  # the models' forward() argument, and the ONNX input name
OUTPUT_NAME = "outputs"
METADATA_FILE = "neuralab.json"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
EXPORT_EXTRA = "pip install 'neuralab[export]'"


class MissingExtraError(ImportError):
    """An optional package that ONNX export needs is not installed; the message names the install command."""


class ExportCheckError(RuntimeError):
    """The exported file's outputs differ from PyTorch's by more than TOLERANCE; no file was kept."""


@dataclass(frozen=True)
class InputSpec:
    """The input sizes an exported model accepts: a fixed (C, H, W), or C with H and W multiples of a factor."""

    channels: int
    size: tuple[int, int] | None  # fixed (height, width), or None for any multiple of size_multiple
    size_multiple: int = 1

    def check(self, shape: tuple[int, ...], name: str = "exported model") -> None:
        """Raise ValueError naming `name` when an input of `shape` (N, C, H, W) is not accepted."""
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"{name}: input must be (batch, {self.channels}, height, width), got {tuple(shape)}")
        height, width = shape[2:]
        if self.size is not None and (height, width) != self.size:
            raise ValueError(f"{name}: input height and width must be {self.size[0]}x{self.size[1]}, got "
                             f"{height}x{width}; apply the preprocessing stored in the file's metadata")
        multiple, smallest = self.size_multiple, self.min_side
        if self.size is None and (height % multiple or width % multiple or min(height, width) < smallest):
            padded = (f"{max(smallest, math.ceil(height / multiple) * multiple)}x"
                      f"{max(smallest, math.ceil(width / multiple) * multiple)}")
            raise ValueError(f"{name}: input height and width must be multiples of {multiple} and at least "
                             f"{smallest}, got {height}x{width}; pad the image at the bottom and right to "
                             f"{padded} (replicating the edge pixels) and crop the output back")

    @property
    def min_side(self) -> int:
        """The smallest height or width accepted when sizes are free multiples."""
        return MIN_BLOCKS * self.size_multiple

    def check_sizes(self, example: tuple[int, int]) -> list[tuple[int, int]]:
        """Return the image sizes the parity check uses: the example and, for free sizes, the smallest ones."""
        if self.size is not None:
            return [self.size]
        smallest = (self.min_side, self.min_side + self.size_multiple)
        return [example] if smallest == example else [example, smallest]

    def to_dict(self) -> dict[str, Any]:
        if self.size is not None:
            return {"name": INPUT_NAME, "shape": ["batch", self.channels, *self.size]}
        return {"name": INPUT_NAME, "shape": ["batch", self.channels, "height", "width"],
                "height_width_multiple_of": self.size_multiple, "min_height_width": self.min_side}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> "InputSpec":
        channels, height, width = stored["shape"][1:]
        if isinstance(height, int):
            return cls(channels, (height, width))
        return cls(channels, None, int(stored["height_width_multiple_of"]))


def input_spec(model: nn.Module, metadata: dict[str, Any]) -> InputSpec:
    """Return the inputs the exported model will accept: the trained size, or free multiples for a U-Net."""
    channels, height, width = metadata["model"]["in_shape"]
    if metadata["task"] == "segmentation":
        return InputSpec(channels, None, int(getattr(model, "size_multiple", 1)))
    return InputSpec(channels, (height, width))


@dataclass(frozen=True)
class ExportReport:
    """The file `export_run` wrote, and the largest difference from PyTorch per checked input shape."""

    path: Path
    format: str
    differences: list[tuple[tuple[int, ...], float]]

    @property
    def max_difference(self) -> float:
        return max(difference for _, difference in self.differences)


def export_run(run_dir: str | Path, format: str, output: str | Path | None = None) -> ExportReport:
    """Export the model of the finished run in `run_dir` to `output` (default RUN_DIR/model.<format>).

    Raises MissingExtraError when ONNX export lacks a package, and ExportCheckError when the
    written file's outputs differ from PyTorch's by more than TOLERANCE; then no file is left.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    if format == "onnx":
        require_onnx()
    run = RunDir.open(resolve_run_dir(run_dir))
    model, metadata, _ = load_model(run.path)
    model.eval()
    spec = input_spec(model, metadata)
    path = Path(output) if output is not None else run.path / f"model.{format}"
    if path.suffix != f".{format}":
        article = "an" if format == "onnx" else "a"
        raise ValueError(f"{path}: {article} {format.upper()} export must be named *.{format}; "
                         f"pass --output {path.parent / ('model.' + format)}")
    _prepare_output(path, format)
    example = _example_size(metadata, spec)
    program = export_program(model, spec, example)
    stored = export_metadata(metadata, spec, run.path, format)
    writer = write_onnx if format == "onnx" else write_pt2
    differences: list[tuple[tuple[int, ...], float]] = []

    def write_and_check(temporary: Path) -> None:
        writer(program, stored, temporary, spec, example)
        differences.extend(compare(model, ExportedModel.load(temporary), spec, example))

    _write_checked(path, write_and_check)
    return ExportReport(path, format, differences)


def _prepare_output(path: Path, format: str) -> None:
    """Create the folder of `path`, or raise ValueError when `path` is a folder or cannot be written there."""
    if path.is_dir():
        raise ValueError(f"--output {path}: is a folder; pass a file path, e.g. --output {path / ('model.' + format)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--output {path}: cannot create the folder {path.parent} ({error.strerror}); pass a "
                         "path in a folder you can write to") from None


def require_onnx() -> None:
    """Raise MissingExtraError naming the ONNX packages that are not installed and the install command."""
    missing = []
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"ONNX export needs the packages {', '.join(ONNX_PACKAGES)}, and "
                                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
                                f"install them with `{EXPORT_EXTRA}`, or use --format pt2")


def _example_size(metadata: dict[str, Any], spec: InputSpec) -> tuple[int, int]:
    """Return the trained image size, for a U-Net rounded up to the size multiple and at least two multiples.

    torch.export specializes a dimension whose example is one multiple (one block) to that size and
    then rejects the dynamic declaration (torch 2.14: "Constraints violated").
    """
    if spec.size is not None:
        return spec.size
    multiple = spec.size_multiple
    height, width = metadata["model"]["in_shape"][1:]
    return (max(MIN_BLOCKS, math.ceil(height / multiple)) * multiple,
            max(MIN_BLOCKS, math.ceil(width / multiple)) * multiple)


def export_program(model: nn.Module, spec: InputSpec, example: tuple[int, int]) -> torch.export.ExportedProgram:
    """Trace `model` with torch.export: a dynamic batch, and for a U-Net height and width as multiples."""
    return torch.export.export(model, (_example_input(spec, example),), dynamic_shapes=_dynamic_shapes(spec))


def _example_input(spec: InputSpec, example: tuple[int, int]) -> Tensor:
    return torch.randn(EXAMPLE_BATCH_SIZE, spec.channels, *example, generator=torch.Generator().manual_seed(0))


def _dynamic_shapes(spec: InputSpec) -> dict[str, dict[int, Any]]:
    Dim = torch.export.Dim
    dims: dict[int, Any] = {0: Dim("batch", min=1)}
    if spec.size is None:
        # Derived dimensions: the size is multiple * blocks, so the padding guard holds for every size.
        dims[2] = spec.size_multiple * Dim("height_blocks", min=MIN_BLOCKS)
        dims[3] = spec.size_multiple * Dim("width_blocks", min=MIN_BLOCKS)
    return {INPUT_NAME: dims}


def export_metadata(metadata: dict[str, Any], spec: InputSpec, run_path: Path, format: str) -> dict[str, Any]:
    """Return what the exported file stores besides the graph: classes, preprocessing, inputs and outputs."""
    from neuralab import __version__

    return {
        "format": f"neuralab-{format}",
        "neuralab_version": __version__,
        "run": run_path.name,
        "recipe": metadata.get("recipe"),
        "model": metadata["model"],
        "task": metadata["task"],
        "head": metadata["head"],
        "classes": metadata["classes"],
        "preprocessing": Preprocessing.from_metadata(metadata).to_dict(),
        "input": spec.to_dict(),
        "output": _output_description(metadata),
    }


def _output_description(metadata: dict[str, Any]) -> str:
    kinds = {"logits": "raw scores (softmax gives probabilities)", "log_softmax": "log-probabilities",
             "softmax": "probabilities", "sigmoid": "independent probabilities"}
    if metadata["task"] == "segmentation":
        return f"(batch, classes, height, width) {kinds[metadata['head']]} per pixel; argmax over classes " \
               "gives the mask"
    return f"(batch, classes) {kinds[metadata['head']]}"


def write_onnx(program: torch.export.ExportedProgram, metadata: dict[str, Any], path: Path, spec: InputSpec,
               example: tuple[int, int]) -> None:
    """Write `program` as one self-contained ONNX file (no external data) with `metadata` in metadata_props."""
    onnx_program = torch.onnx.export(program, (_example_input(spec, example),), input_names=[INPUT_NAME],
                                     output_names=[OUTPUT_NAME], dynamic_shapes=_dynamic_shapes(spec),
                                     external_data=False, verbose=False)
    for key, value in metadata.items():
        onnx_program.model.metadata_props[key] = json.dumps(value)
    onnx_program.save(str(path), external_data=False)


def write_pt2(program: torch.export.ExportedProgram, metadata: dict[str, Any], path: Path, spec: InputSpec,
              example: tuple[int, int]) -> None:
    """Write `program` with torch.export.save, `metadata` as the extra file neuralab.json."""
    torch.export.save(program, str(path), extra_files={METADATA_FILE: json.dumps(metadata)})


class ExportedModel:
    """An exported file loaded for inference (onnxruntime or torch.export.load), with its metadata.

    A call checks the input size against the metadata first, so an unsupported size fails with
    the fix instead of deep inside the graph.
    """

    def __init__(self, path: Path, metadata: dict[str, Any], run: Callable[[np.ndarray], np.ndarray]) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.spec = InputSpec.from_dict(metadata["input"])
        self._run = run

    @classmethod
    def load(cls, path: str | Path) -> "ExportedModel":
        """Load a .onnx or .pt2 file written by `neuralab export`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: exported model not found")
        if path.suffix == ".pt2":
            return cls._load_pt2(path)
        return cls._load_onnx(path)

    @classmethod
    def _load_pt2(cls, path: Path) -> "ExportedModel":
        extra_files = {METADATA_FILE: ""}
        module = torch.export.load(str(path), extra_files=extra_files).module()
        if not extra_files[METADATA_FILE]:
            raise ValueError(f"{path}: no {METADATA_FILE} inside; export the model with `neuralab export`")

        def run(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(images)).numpy()

        return cls(path, json.loads(extra_files[METADATA_FILE]), run)

    @classmethod
    def _load_onnx(cls, path: Path) -> "ExportedModel":
        require_onnx()
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        stored = session.get_modelmeta().custom_metadata_map
        if "input" not in stored:
            raise ValueError(f"{path}: no neuralab metadata in the ONNX file; export it with `neuralab export`")
        metadata = {key: json.loads(value) for key, value in stored.items()}
        return cls(path, metadata, lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0])

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        """Return the model's outputs for normalized float32 images (N, C, H, W)."""
        array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
        self.spec.check(array.shape, str(self.path))
        return self._run(np.ascontiguousarray(array, dtype=np.float32))


def compare(model: nn.Module, exported: ExportedModel, spec: InputSpec,
            example: tuple[int, int]) -> list[tuple[tuple[int, ...], float]]:
    """Return the largest absolute difference from `model` per checked input shape; raise ExportCheckError above TOLERANCE."""
    generator = torch.Generator().manual_seed(1)
    differences = []
    for height, width in spec.check_sizes(example):
        for batch_size in CHECK_BATCH_SIZES:
            images = torch.randn(batch_size, spec.channels, height, width, generator=generator)
            with torch.inference_mode():
                expected = model(images).numpy()
            difference = float(np.abs(exported(images) - expected).max())
            differences.append((tuple(images.shape), difference))
            if not difference <= TOLERANCE:  # also true for NaN
                raise ExportCheckError(f"{exported.path.name}: outputs differ from PyTorch by up to {difference:.3g} "
                                       f"on input {tuple(images.shape)}, more than {TOLERANCE:g}; no file was "
                                       "written. Try the other --format")
    return differences


def _write_checked(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file beside `path` with the same suffix, then rename it to `path`.

    The suffix matters because torch.export.save and load accept only names ending in .pt2.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
