"""A reporter that passes training progress on to several reporters, such as the console and a stats recorder."""

from neuralab.training.engine import EpochResult, Reporter


class ReporterGroup:
    """Forward every progress call to each reporter, in the order given."""

    def __init__(self, *reporters: Reporter | None) -> None:
        self.reporters = [reporter for reporter in reporters if reporter is not None]

    def start_epoch(self, epoch: int, steps: int) -> None:
        for reporter in self.reporters:
            reporter.start_epoch(epoch, steps)

    def batch_done(self, step: int, loss: float) -> None:
        for reporter in self.reporters:
            reporter.batch_done(step, loss)

    def epoch_done(self, result: EpochResult) -> None:
        for reporter in self.reporters:
            reporter.epoch_done(result)

    def close(self) -> None:
        """Call `close` on every reporter that has one."""
        for reporter in self.reporters:
            close = getattr(reporter, "close", None)
            if close is not None:
                close()
