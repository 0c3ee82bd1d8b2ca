"""Image-folder data sets: classification (one sub-folder per class) and segmentation (images/ and masks/).

Layouts under the data folder ROOT:
  classification: ROOT/<class>/<image>; the classes are the sorted sub-folder names.
  segmentation:   ROOT/images/<stem>.<ext> and ROOT/masks/<stem>.png, paired by file stem. The
                  classes are the lines of ROOT/classes.txt, or "0".."n-1" for data.num_classes = n.
A sub-folder ROOT/test/ in the same layout is the test split; without it there is no test set.
"""

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from neuralab.data.idx import DataFileError
from neuralab.data.sources import DATASETS

NAME = "folder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TEST_FOLDER = "test"
CLASSES_FILE = "classes.txt"
IGNORE_INDEX = 255  # multi-class masks: pixels to leave out of the loss and the metrics (Pascal VOC's "void")
BINARY_FOREGROUND = 255  # binary masks saved as black and white images store the foreground as 255
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# Pixels scaled to [0, 1] are mapped to [-1, 1]. The statistics are fixed rather than measured, so
# a test folder is normalized without reading the training images.
MEAN = 0.5
STD = 0.5

# Registered so that `neuralab list datasets` and the unknown-name error show it; data preparation
# dispatches on the name and never builds this entry.
DATASETS.register(NAME, "your images in --data-dir: one sub-folder per class, or images/ and masks/ "
                  "for segmentation")(lambda: NAME)


@dataclass(frozen=True)
class FolderSpec:
    """The target format of every split of a folder data set: task, classes, channels and size."""

    task: str  # "classification" or "segmentation"
    classes: tuple[str, ...]
    channels: int
    size: tuple[int, int]  # (height, width)
    resize: bool  # True: images are resized to `size`. False: every image must already have that size

    @property
    def ignore_index(self) -> int | None:
        """The mask value excluded from loss and metrics: 255 in multi-class masks, none otherwise."""
        return IGNORE_INDEX if self.task == "segmentation" and len(self.classes) > 2 else None


@dataclass(frozen=True)
class FolderSplit:
    """Decoded images uint8 (N, C, H, W) and targets: int64 labels (N,) or uint8 masks (N, H, W)."""

    images: Tensor
    targets: Tensor


def image_files(folder: Path) -> list[Path]:
    """Return the image files directly in `folder`, sorted by name. Hidden and other files are skipped."""
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES)


def find_task(root: Path) -> str:
    """Return "segmentation" when `root` contains images/ and masks/, or "classification" for class folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found; pass --data-dir with a folder of images")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "segmentation"
    if class_folders(root):
        return "classification"
    raise FileNotFoundError(f"{root}: expected one sub-folder of images per class, or images/ and masks/ "
                            "sub-folders for segmentation; found neither")


def class_folders(root: Path) -> dict[str, list[Path]]:
    """Return {class name: image files} for the sorted sub-folders of `root`, except test/ and hidden ones."""
    folders = sorted(path for path in Path(root).iterdir()
                     if path.is_dir() and path.name != TEST_FOLDER and not path.name.startswith("."))
    return {folder.name: image_files(folder) for folder in folders}


@dataclass(frozen=True)
class Pairing:
    """Image and mask files of a segmentation folder matched by file stem."""

    pairs: list[tuple[Path, Path]]
    unpaired_images: list[Path]
    unpaired_masks: list[Path]
    duplicates: list[Path]  # files whose stem another file in the same folder already has


def pair_files(root: Path) -> Pairing:
    """Match root/images/<stem>.* with root/masks/<stem>.*."""
    by_stem: dict[str, dict[str, list[Path]]] = {"images": defaultdict(list), "masks": defaultdict(list)}
    for kind in by_stem:
        for path in image_files(Path(root) / kind):
            by_stem[kind][path.stem].append(path)
    images, masks = by_stem["images"], by_stem["masks"]
    duplicates = [path for group in (*images.values(), *masks.values()) for path in group[1:]]
    pairs = [(images[stem][0], masks[stem][0]) for stem in sorted(images.keys() & masks.keys())]
    unpaired_images = [images[stem][0] for stem in sorted(images.keys() - masks.keys())]
    unpaired_masks = [masks[stem][0] for stem in sorted(masks.keys() - images.keys())]
    return Pairing(pairs, unpaired_images, unpaired_masks, duplicates)


def read_class_names(root: Path, num_classes: int | None) -> tuple[str, ...]:
    """Return the segmentation class names from classes.txt, checked against `num_classes` when both exist."""
    path = Path(root) / CLASSES_FILE
    names = None
    if path.is_file():
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if names is None and num_classes is None:
        raise ValueError(f"{root}: the number of mask classes is unknown; set data.num_classes (--num-classes) "
                         f"or write {CLASSES_FILE} there with one class name per line, background first")
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{path} lists {len(names)} classes but data.num_classes is {num_classes}; "
                         "make them agree or drop one of them")
    count = len(names) if names is not None else num_classes
    if not 2 <= count < IGNORE_INDEX:
        raise ValueError(f"{root}: segmentation needs 2 to {IGNORE_INDEX - 1} classes (mask value {IGNORE_INDEX} "
                         f"is reserved), got {count}")
    return names if names is not None else tuple(str(index) for index in range(count))


def open_image(path: Path) -> Image.Image:
    """Return the fully decoded image at `path`, or raise DataFileError naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataFileError(f"{path}: cannot read the image ({error}); replace or remove the file") from None


def convert_image(image: Image.Image, channels: int) -> Tensor:
    """Return `image` as uint8 (channels, H, W), after compositing any transparency on white.

    NOTE: 16- and 32-bit grayscale images (modes I;16, I, F) go through PIL's convert, which
    clips values above 255 instead of rescaling them.
    """
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    tensor = torch.from_numpy(pixels.copy())
    if tensor.dim() == 2:
        return tensor.unsqueeze(0)  # (H, W) -> (1, H, W)
    return tensor.permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


def read_mask(path: Path) -> np.ndarray:
    """Return the class-index map stored at `path` as an (H, W) array, without any mode conversion.

    Converting a palette PNG to "L" would turn class indices into luminance, so the stored
    values are read as they are.
    """
    values = np.array(open_image(path))
    if values.ndim != 2:
        raise DataFileError(f"{path}: a mask must be a single-channel class-index image (mode P, L or I), "
                            f"found {values.shape[-1]} channels; save it as a palette or grayscale PNG")
    return values


def first_invalid_value(values: np.ndarray, num_classes: int) -> int | None:
    """Return the smallest mask value that is not a class index (nor 255 where allowed), or None."""
    present = np.unique(values).astype(np.int64)
    invalid = present[((present < 0) | (present >= num_classes)) & (present != IGNORE_INDEX)]
    return int(invalid[0]) if len(invalid) else None


def map_mask(values: np.ndarray, num_classes: int, path: Path) -> Tensor:
    """Return mask `values` as uint8 class indices. Binary 255 becomes 1, and multi-class 255 stays "ignore"."""
    invalid = first_invalid_value(values, num_classes)
    if invalid is not None:
        ignore = "255 for pixels to ignore" if num_classes > 2 else "255 for class 1"
        raise ValueError(f"{path}: mask value {invalid} is out of range for {num_classes} classes (valid values: "
                         f"0..{num_classes - 1} and {ignore}); fix the mask, or set data.num_classes "
                         f"(--num-classes) or {CLASSES_FILE} to the real class count")
    mask = torch.from_numpy(values.astype(np.uint8))
    if num_classes == 2:
        mask[mask == BINARY_FOREGROUND] = 1
    return mask


def resize(image: Tensor, mask: Tensor | None, size: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """Resize an image (C, H, W) and its mask (H, W) to `size` together, the mask by nearest neighbours."""
    if tuple(image.shape[-2:]) == size:
        return image, mask
    transform = v2.Resize(size, antialias=True)
    if mask is None:
        return transform(tv_tensors.Image(image)).as_subclass(Tensor), None
    resized_image, resized_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask.unsqueeze(0)))
    return resized_image.as_subclass(Tensor), resized_mask.as_subclass(Tensor).squeeze(0)  # (1, H, W) -> (H, W)


def _split_root(root: Path, split: str) -> Path:
    return Path(root) / TEST_FOLDER if split == "test" else Path(root)


def _samples(root: Path, task: str, classes: tuple[str, ...] | None) -> list[tuple[Path, Path | int]]:
    """Return (image, mask path or class index) of every sample under `root`."""
    if task == "segmentation":
        pairing = pair_files(root)
        orphans = pairing.unpaired_images + pairing.unpaired_masks + pairing.duplicates
        if orphans:
            raise ValueError(f"{orphans[0]}: not paired with exactly one file of the same stem in images/ and masks/ "
                             f"({len(orphans)} unpaired or duplicate files in {root}); run `neuralab data check "
                             f"{root}` to list them")
        return list(pairing.pairs)
    folders = class_folders(root)
    classes = classes if classes is not None else tuple(folders)
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise ValueError(f"{root / unknown[0]}: class folder not among the training classes ({', '.join(classes)})")
    return [(path, classes.index(name)) for name, paths in folders.items() for path in paths]


def describe(root: Path, num_classes: int | None, image_size: int | None, channels: int | None) -> FolderSpec:
    """Return the spec of the folder data set at `root`, read from its training split's file headers."""
    task = find_task(root)
    samples = _samples(root, task, None)
    if not samples:
        raise ValueError(f"{root}: no training images found (image suffixes: {', '.join(IMAGE_SUFFIXES)})")
    classes = read_class_names(root, num_classes) if task == "segmentation" else tuple(class_folders(root))
    if task == "classification" and num_classes is not None and num_classes != len(classes):
        raise ValueError(f"{root} contains {len(classes)} class folders but data.num_classes is {num_classes}; "
                         "drop --num-classes for a classification folder")
    if channels is None:
        modes = {read_header(path)[0] for path, _ in samples}
        channels = 1 if modes <= set(GRAYSCALE_MODES) else 3
    elif channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3, got {channels}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"data.image_size must be positive, got {image_size}")
    size = (image_size, image_size) if image_size else read_header(samples[0][0])[1]
    return FolderSpec(task, classes, channels, size, resize=image_size is not None)


def read_header(path: Path) -> tuple[str, tuple[int, int]]:
    """Return (mode, (height, width)) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.mode, (image.height, image.width)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the image ({error}); replace or remove the file") from None


def decoded_bytes(count: int, spec: FolderSpec) -> int:
    """Return the memory that `count` samples take once normalized: float32 images plus uint8 masks."""
    pixels = spec.size[0] * spec.size[1]
    return count * pixels * (4 * spec.channels + (1 if spec.task == "segmentation" else 0))


def split_samples(root: Path, split: str, spec: FolderSpec) -> list[tuple[Path, Path | int]] | None:
    """Return (image, mask path or class index) of every sample of `split` ("train" or "test").

    Return None for the test split of a folder without a test/ sub-folder.
    """
    split_root = _split_root(root, split)
    if split == "test" and not split_root.is_dir():
        return None
    samples = _samples(split_root, spec.task, spec.classes)
    if not samples:
        raise ValueError(f"{split_root}: no images found; add images in the training layout or remove the folder")
    return samples


def load_samples(samples: list[tuple[Path, Path | int]], spec: FolderSpec) -> FolderSplit:
    """Decode every sample into memory at `spec.size`."""
    images, targets = [], []
    for image_path, target in samples:
        image, target = load_sample(image_path, target, spec)
        images.append(image)
        targets.append(target)
    stacked = torch.stack(targets) if spec.task == "segmentation" else torch.tensor(targets, dtype=torch.int64)
    return FolderSplit(torch.stack(images), stacked)


def load_sample(image_path: Path, target: Path | int, spec: FolderSpec) -> tuple[Tensor, Tensor | int]:
    """Return one decoded image (C, H, W) and its target, both at `spec.size`."""
    image, target = decode_sample(image_path, target, spec)
    check_image_size(image_path, tuple(image.shape[-2:]), spec)
    mask = target if isinstance(target, Tensor) else None
    image, mask = resize(image, mask, spec.size)
    return image, mask if mask is not None else target


def decode_sample(image_path: Path, target: Path | int, spec: FolderSpec) -> tuple[Tensor, Tensor | int]:
    """Return one image uint8 (C, H, W) at its stored size and its target: a class index, or the mask (H, W)."""
    image = convert_image(open_image(image_path), spec.channels)
    if not isinstance(target, Path):
        return image, target
    mask = map_mask(read_mask(target), len(spec.classes), target)
    check_mask_size(target, tuple(mask.shape), image_path, tuple(image.shape[-2:]))
    return image, mask


def check_mask_size(mask_path: Path, mask_size: tuple[int, int], image_path: Path, image_size: tuple[int, int]) -> None:
    """Raise ValueError unless a mask has exactly its image's (height, width)."""
    if mask_size != image_size:
        raise ValueError(f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but its image {image_path.name} "
                         f"is {image_size[0]}x{image_size[1]} (height x width); masks must match their image")


def check_image_size(image_path: Path, image_size: tuple[int, int], spec: FolderSpec) -> None:
    """Raise ValueError when an image differs from `spec.size` and is not going to be resized."""
    if image_size != spec.size and not spec.resize:
        raise ValueError(f"{image_path}: image is {image_size[0]}x{image_size[1]} but the first training image is "
                         f"{spec.size[0]}x{spec.size[1]} (height x width); set data.image_size (--image-size) "
                         "to resize every image to one size")
