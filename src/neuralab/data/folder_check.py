"""Inspect an image folder before training: its contents and every problem, by file name.

`check_folder` reads every image and mask of the training split and of test/ the way training
would, but collects problems instead of stopping at the first. Errors would stop training
(unreadable or unpaired files, mask values outside the class range); warnings describe a
conversion that training applies silently (transparency, grayscale among colour, 0/255 masks).
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralab.data import folders
from neuralab.data.idx import DataFileError

LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Problem:
    """One finding about one file: an error stops training, a warning describes a conversion."""

    severity: str  # "error" or "warning"
    path: Path
    message: str


@dataclass
class FolderReport:
    """Contents of a data folder, counted over all its splits, and the problems found."""

    root: Path
    task: str
    classes: tuple[str, ...] | None  # None when a segmentation folder's class count is unknown
    classes_source: str
    samples: Counter = field(default_factory=Counter)  # split -> images (or image/mask pairs)
    class_counts: Counter = field(default_factory=Counter)  # classification: class -> images
    sizes: Counter = field(default_factory=Counter)  # (height, width) -> images
    modes: Counter = field(default_factory=Counter)  # PIL mode -> images
    mask_values: Counter = field(default_factory=Counter)  # mask value -> pixels
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == "warning"]

    def add(self, severity: str, path: Path, message: str) -> None:
        self.problems.append(Problem(severity, path, message))


def check_folder(root: Path, num_classes: int | None = None) -> FolderReport:
    """Return the report on the folder data set at `root`. A given `num_classes` must agree with classes.txt."""
    root = Path(root)
    task = folders.find_task(root)
    report = FolderReport(root, task, *_classes(root, task, num_classes))
    if report.classes is None:
        report.add("warning", root, f"the number of mask classes is unknown, so mask values are not checked; "
                   f"pass --num-classes or write {folders.CLASSES_FILE} (one class name per line)")
    splits = {"train": root, "test": root / folders.TEST_FOLDER}
    images_by_split = {split: _split_files(report, folder) for split, folder in splits.items() if folder.is_dir()}
    headers = {path: _inspect_image(report, path) for files in images_by_split.values() for path, _ in files}
    grayscale_only = all(mode in folders.GRAYSCALE_MODES for mode, _ in filter(None, headers.values()))
    sizes = [header[1] for header in headers.values() if header is not None]
    first_size = sizes[0] if sizes else None
    for split, files in images_by_split.items():
        report.samples[split] = len(files)
        for image_path, target in files:
            header = headers[image_path]
            if header is None:
                continue
            _check_image(report, image_path, header, grayscale_only, first_size)
            if isinstance(target, Path):
                _check_mask(report, target, header[1])
    return report


def _classes(root: Path, task: str, num_classes: int | None) -> tuple[tuple[str, ...] | None, str]:
    """Return (class names, where they came from); (None, "unknown") when a mask folder gives no count."""
    if task == "classification":
        return tuple(folders.class_folders(root)), "class folders"
    has_file = (root / folders.CLASSES_FILE).is_file()
    if num_classes is None and not has_file:
        return None, "unknown"
    return folders.read_class_names(root, num_classes), folders.CLASSES_FILE if has_file else "--num-classes"


def _split_files(report: FolderReport, folder: Path) -> list[tuple[Path, Path | str]]:
    """Return (image, mask path or class name) of every sample in `folder`, reporting unpaired files."""
    if report.task == "segmentation":
        if not ((folder / "images").is_dir() and (folder / "masks").is_dir()):
            report.add("error", folder, "expected images/ and masks/ sub-folders, as in the training folder")
            return []
        pairing = folders.pair_files(folder)
        for path in pairing.unpaired_images:
            report.add("error", path, "image has no mask of the same file stem in masks/")
        for path in pairing.unpaired_masks:
            report.add("error", path, "mask has no image of the same file stem in images/")
        for path in pairing.duplicates:
            report.add("error", path, "another file in this folder has the same stem; pairing is ambiguous")
        return list(pairing.pairs)
    files = []
    for name, paths in folders.class_folders(folder).items():
        if report.classes is not None and name not in report.classes:
            report.add("error", folder / name, f"class folder not among the training classes "
                       f"({', '.join(report.classes)})")
        if not paths:
            report.add("warning", folder / name, "class folder contains no images")
        report.class_counts[name] += len(paths)
        files.extend((path, name) for path in paths)
    return files


def _inspect_image(report: FolderReport, path: Path) -> tuple[str, tuple[int, int]] | None:
    """Return (mode, (height, width)) of a readable image, or None after reporting it unreadable."""
    try:
        image = folders.open_image(path)
    except DataFileError as error:
        report.add("error", path, str(error).removeprefix(f"{path}: "))
        return None
    report.modes[image.mode] += 1
    report.sizes[(image.height, image.width)] += 1
    return image.mode, (image.height, image.width)


def _check_image(report: FolderReport, path: Path, header: tuple[str, tuple[int, int]], grayscale_only: bool,
                 first_size: tuple[int, int] | None) -> None:
    mode, size = header
    if mode in folders.ALPHA_MODES:
        report.add("warning", path, f"image has transparency (mode {mode}); it will be composited on white")
    if mode in folders.GRAYSCALE_MODES and not grayscale_only:
        report.add("warning", path, f"grayscale image (mode {mode}) among colour images; it will be converted "
                   "to RGB by repeating its channel")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        report.add("warning", path, f"image has more than 8 bits per pixel (mode {mode}); values above 255 "
                   "will be clipped")
    if first_size is not None and size != first_size:
        report.add("warning", path, f"image is {size[0]}x{size[1]} but the first image is "
                   f"{first_size[0]}x{first_size[1]} (height x width); train with --image-size to resize all")


def _check_mask(report: FolderReport, path: Path, image_size: tuple[int, int]) -> None:
    try:
        values = folders.read_mask(path)
    except DataFileError as error:
        report.add("error", path, str(error).removeprefix(f"{path}: "))
        return
    if path.suffix.lower() in LOSSY_SUFFIXES:
        report.add("warning", path, "mask is stored in a lossy format, which alters class values at edges; "
                   "save masks as PNG")
    if tuple(values.shape) != image_size:
        report.add("error", path, f"mask is {values.shape[0]}x{values.shape[1]} but its image is "
                   f"{image_size[0]}x{image_size[1]} (height x width)")
    present, counts = np.unique(values, return_counts=True)
    report.mask_values.update(dict(zip(present.tolist(), counts.tolist())))
    if report.classes is None:
        return
    num_classes = len(report.classes)
    invalid = [value for value in present.tolist()
               if (value < 0 or value >= num_classes) and value != folders.IGNORE_INDEX]
    if invalid:
        allowed = "255 for pixels to ignore" if num_classes > 2 else "255 for class 1"
        report.add("error", path, f"mask value {', '.join(map(str, invalid))} is out of range for {num_classes} "
                   f"classes (valid values: 0..{num_classes - 1} and {allowed})")
    elif num_classes == 2 and folders.BINARY_FOREGROUND in present:
        report.add("warning", path, "binary mask stored as 0/255; value 255 will be read as class 1")
