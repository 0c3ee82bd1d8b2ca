"""Reading IDX files (the MNIST format) with every field checked.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data. Only unsigned bytes
(type 0x08) occur in MNIST and Fashion-MNIST, so only that type is accepted. Gzip is
detected from its two magic bytes, not from the file name.
"""

import gzip
import struct
import zlib
from pathlib import Path

import torch

GZIP_MAGIC = b"\x1f\x8b"
UBYTE_TYPE = 0x08


class DataFileError(ValueError):
    """A data file that is missing, truncated or inconsistent; the message names the file."""


def read_bytes(path: Path) -> bytes:
    """Return the file's content, decompressed when it starts with the gzip magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise DataFileError(f"{path}: corrupt or truncated gzip data ({error}); copy the file again") from None


def read_idx(path: Path, expected_dims: int | None = None) -> torch.Tensor:
    """Return the IDX file at `path` as a uint8 tensor, after checking its header and size."""
    data = read_bytes(path)
    if len(data) < 4:
        raise DataFileError(f"{path}: expected an IDX header of at least 4 bytes, found {len(data)} bytes")

    zero, data_type, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or data_type != UBYTE_TYPE:
        raise DataFileError(
            f"{path}: expected the IDX magic number 0x000008NN (unsigned bytes), "
            f"found 0x{data[:4].hex()}; this is not an MNIST-style IDX file"
        )
    if expected_dims is not None and dims != expected_dims:
        raise DataFileError(f"{path}: expected {expected_dims} dimensions, found {dims}")

    header_size = 4 + 4 * dims
    if len(data) < header_size:
        raise DataFileError(f"{path}: expected a {header_size}-byte header, found {len(data)} bytes in all")
    shape = struct.unpack(f">{dims}I", data[4:header_size])
    body_size = 1
    for size in shape:
        body_size *= size
    if len(data) != header_size + body_size:
        raise DataFileError(
            f"{path}: expected {header_size + body_size} bytes for shape {tuple(shape)}, "
            f"found {len(data)} (the file is truncated or has extra bytes); copy the file again"
        )
    if body_size == 0:
        return torch.empty(shape, dtype=torch.uint8)
    body = bytearray(data[header_size:])
    return torch.frombuffer(body, dtype=torch.uint8).reshape(shape)


def read_images_and_labels(images_path: Path, labels_path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images (N, H, W) uint8, labels (N,) int64) from a pair of IDX files, checked as a pair."""
    images = read_idx(images_path, expected_dims=3)
    labels = read_idx(labels_path, expected_dims=1)
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"{labels_path}: expected {images.shape[0]} labels to match {images_path}, found {labels.shape[0]}; "
            "the label file belongs to another image file"
        )
    if labels.numel() and int(labels.max()) >= num_classes:
        bad = int(labels.max())
        raise DataFileError(f"{labels_path}: expected labels in 0..{num_classes - 1}, found {bad}")
    return images, labels.long()
