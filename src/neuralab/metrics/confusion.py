"""The confusion matrix that every neuralab metric is computed from.

`ConfusionMatrix` accumulates counts over batches (rows = true class, columns = predicted
class), can merge with another matrix or be summed across processes, and is then handed to
the functions in `classification` and `segmentation`.
"""

import torch
import torch.distributed as dist
from torch import Tensor


class ConfusionMatrix:
    """Accumulated (num_classes, num_classes) int64 counts of (true class, predicted class)."""

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @property
    def matrix(self) -> Tensor:
        """The accumulated counts, shape (num_classes, num_classes), indexed [true, predicted]."""
        return self._matrix

    def reset(self) -> None:
        """Set every count to zero, for example at the start of an evaluation pass."""
        self._matrix.zero_()

    def update(self, predictions: Tensor, targets: Tensor) -> None:
        """Add a batch of class indices to the counts.

        `predictions` and `targets` must share one shape, such as (B,) or (B, H, W).
        """
        _check_class_indices("predictions", predictions)
        _check_class_indices("targets", targets)
        if predictions.shape != targets.shape:
            raise ValueError(
                f"predictions and targets must have the same shape, got {tuple(predictions.shape)} "
                f"and {tuple(targets.shape)}. For logits of shape (B, C, ...), pass "
                "logits.argmax(dim=1) as predictions"
            )

        predictions = predictions.reshape(-1).long()  # (B, ...) -> (N,)
        targets = targets.reshape(-1).long()  # (B, ...) -> (N,)
        if self.ignore_index is not None:
            keep = targets != self.ignore_index
            predictions = predictions[keep]
            targets = targets[keep]
        self._check_range("targets", targets)
        self._check_range("predictions", predictions)

        # Cell (t, p) of the flattened matrix is bin t * n + p, so one bincount fills it all.
        n = self.num_classes
        counts = torch.bincount(targets * n + predictions, minlength=n * n)
        self._matrix += counts.reshape(n, n).to(self._matrix.device)  # (n*n,) -> (n, n)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add the counts of `other` (for example from another data shard) and return self."""
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a confusion matrix with num_classes={other.num_classes} into one "
                f"with num_classes={self.num_classes}. Both must count the same classes"
            )
        self._matrix += other.matrix.to(self._matrix.device)
        return self

    def reduce_(self, group: dist.ProcessGroup | None = None) -> None:
        """Sum the matrix in place over all processes of `group` (default: the world group).

        A no-op unless torch.distributed is initialized. Like any collective, every process in
        the group must call it.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return

        # NCCL reduces only CUDA tensors, so a CPU matrix travels through the current GPU.
        # NOTE: tests cover only the gloo path, and this NCCL branch has not been run on a GPU.
        if dist.get_backend(group) == "nccl" and self._matrix.device.type != "cuda":
            on_gpu = self._matrix.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM, group=group)
            self._matrix.copy_(on_gpu)
        else:
            dist.all_reduce(self._matrix, op=dist.ReduceOp.SUM, group=group)

    def _check_range(self, name: str, indices: Tensor) -> None:
        """Raise ValueError naming the first class index outside [0, num_classes)."""
        invalid = indices[(indices < 0) | (indices >= self.num_classes)]
        if invalid.numel() == 0:
            return
        hint = (
            f" and not ignore_index={self.ignore_index}"
            if self.ignore_index is not None and name == "targets"
            else ""
        )
        raise ValueError(
            f"{name} contains class index {invalid[0].item()}, which is outside [0, "
            f"{self.num_classes}) for num_classes={self.num_classes}{hint}. Check the label "
            "mapping, raise num_classes, or set ignore_index for labels to skip"
        )

    def __repr__(self) -> str:
        total = int(self._matrix.sum().item())
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"total={total})"
        )


def _check_class_indices(name: str, indices: Tensor) -> None:
    """Raise TypeError unless `indices` is an integer tensor of class indices."""
    if not isinstance(indices, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of class indices, got {type(indices).__name__}"
        )
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor of class indices, got dtype {indices.dtype}. "
            "For logits or probabilities of shape (B, C, ...), pass .argmax(dim=1)"
        )


def as_counts(confusion: "ConfusionMatrix | Tensor") -> list[list[int]]:
    """Return the counts of a ConfusionMatrix or square integer tensor as nested Python ints.

    Metric code works on Python ints, so ratios of large pixel counts are exact and JSON-ready.
    """
    matrix = confusion.matrix if isinstance(confusion, ConfusionMatrix) else confusion
    if not isinstance(matrix, Tensor):
        raise TypeError(
            f"confusion must be a ConfusionMatrix or a torch.Tensor, got {type(matrix).__name__}"
        )
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(
            f"confusion matrix must be square with shape (n, n), n >= 1, got {tuple(matrix.shape)}"
        )
    if matrix.is_floating_point() or matrix.is_complex() or matrix.dtype == torch.bool:
        raise TypeError(f"confusion matrix must hold integer counts, got dtype {matrix.dtype}")
    if bool((matrix < 0).any()):
        raise ValueError("confusion matrix contains negative counts, but counts must be >= 0")
    return matrix.detach().cpu().tolist()
