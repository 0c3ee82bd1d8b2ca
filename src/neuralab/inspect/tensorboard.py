"""Optional TensorBoard logging through `torch.utils.tensorboard`, which needs the `tensorboard` package.

`TensorBoardLogger` is a training reporter that writes into RUN_DIR/tensorboard/. It logs the
epoch scalars of metrics.jsonl and each sampled row of a StatsRecorder (gradient norms and
activation statistics, by training step). Before the first epoch and after every epoch it also
logs weight and bias histograms and the first layer's weights as images.
"""

from pathlib import Path
from typing import Any

from torch import nn

from neuralab.inspect.recorder import StatsRecorder, unwrap
from neuralab.inspect.weights import first_layer_images, first_weight_layer, scale_symmetric
from neuralab.training.engine import EpochResult

# At most this many first-layer neurons or filters go into the image grid.
MAX_IMAGES = 64


class OptionalDependencyError(ImportError):
    """A feature needs a package that is not installed; the message names the package and the install command."""


def summary_writer_class() -> type:
    """Return torch's SummaryWriter, or raise OptionalDependencyError when `tensorboard` is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OptionalDependencyError(
            "--tensorboard needs the tensorboard package, which is not installed; install it with "
            "`pip install \"neuralab[tensorboard]\"` (or `pip install tensorboard`), or train without --tensorboard"
        ) from None
    return SummaryWriter


class TensorBoardLogger:
    """Write training scalars, histograms and first-layer images for TensorBoard."""

    def __init__(self, model: nn.Module, log_dir: Path, in_shape: tuple[int, int, int],
                 recorder: StatsRecorder | None = None, start_epoch: int = 0) -> None:
        writer_class = summary_writer_class()
        self.model = unwrap(model)
        self.in_shape = in_shape
        self.recorder = recorder
        self._rows_written = len(recorder.rows) if recorder is not None else 0
        # purge_step drops events of a resumed run's unfinished epoch, so the curves do not fork.
        self.writer = writer_class(log_dir=str(log_dir), purge_step=start_epoch + 1 if start_epoch else None)
        if start_epoch == 0:
            self._write_weights(0)

    def start_epoch(self, epoch: int, steps: int) -> None:
        pass

    def batch_done(self, step: int, loss: float) -> None:
        if self.recorder is None:
            return
        for row in self.recorder.rows[self._rows_written:]:
            self._write_row(row)
        self._rows_written = len(self.recorder.rows)

    def epoch_done(self, result: EpochResult) -> None:
        scalars = {"loss/train": result.train_loss, "loss/val": result.val_loss,
                   "accuracy/train": result.train_accuracy, "accuracy/val": result.val_accuracy,
                   "learning_rate": result.lr, "samples_per_second": result.samples_per_second}
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, result.epoch)
        self._write_weights(result.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def _write_row(self, row: dict[str, Any]) -> None:
        step = row["step"]
        self.writer.add_scalar("step/loss", row["loss"], step)
        for layer, norm in row["grad_norm"].items():
            if norm is not None:
                self.writer.add_scalar(f"gradient_norm/{layer}", norm, step)
        for layer, values in row["activations"].items():
            for key, value in values.items():
                if value is not None:
                    self.writer.add_scalar(f"activations/{layer}/{key}", value, step)

    def _write_weights(self, epoch: int) -> None:
        """Write every parameter's histogram and the first layer's weights as images, at `epoch`."""
        for name, parameter in self.model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", parameter.detach().cpu(), epoch)
        name, module = first_weight_layer(self.model)
        images, _ = first_layer_images(module.weight.detach().cpu(), self.in_shape)
        images = scale_symmetric(images[:MAX_IMAGES])
        layout = "NHWC" if images.dim() == 4 else "NHW"
        if layout == "NHW":
            images = images.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
            layout = "NCHW"
        self.writer.add_images(f"first_layer/{name}", images, epoch, dataformats=layout)
