"""Console progress for training: a tqdm bar on a terminal, one plain line per epoch otherwise."""

import sys

from tqdm import tqdm

from neuralab.training.engine import EpochResult


def format_epoch(result: EpochResult, epochs: int) -> str:
    """Return the fixed-width human line for one epoch."""
    width = len(str(epochs))
    val = ("val loss  n/a    acc   n/a  " if result.val_loss is None
           else f"val loss {result.val_loss:.4f} acc {100 * result.val_accuracy:6.2f}%")
    return (f"epoch {result.epoch:>{width}}/{epochs}  train loss {result.train_loss:.4f} "
            f"acc {100 * result.train_accuracy:6.2f}%  {val}  lr {result.lr:.2e}  "
            f"{result.seconds:6.1f}s  {result.samples_per_second:8.0f} samples/s")


class ConsoleReporter:
    """Draw training progress on stderr (bar) and stdout (epoch lines)."""

    def __init__(self, epochs: int, bar: bool | None = None) -> None:
        self.epochs = epochs
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self._bar: tqdm | None = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self.bar_enabled:
            self._bar = tqdm(total=steps, desc=f"epoch {epoch}/{self.epochs}", leave=False, unit="batch",
                             dynamic_ncols=True, file=sys.stderr)

    def batch_done(self, step: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if step % 20 == 0:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def epoch_done(self, result: EpochResult) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(format_epoch(result, self.epochs), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
