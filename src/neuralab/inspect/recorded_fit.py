"""Training with layer statistics recorded and, when the configuration requests it, TensorBoard logging."""

from typing import Any

from neuralab.inspect.recorder import StatsRecorder
from neuralab.inspect.tensorboard import TensorBoardLogger
from neuralab.training import session as sessions
from neuralab.training.engine import Reporter
from neuralab.training.reporters import ReporterGroup
from neuralab.training.runs import RunDir


def fit_recorded(session: sessions.Session, run: RunDir, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run `sessions.fit` with a StatsRecorder (and a TensorBoardLogger when train.tensorboard is set).

    Raises OptionalDependencyError before training when TensorBoard is requested but not installed.
    """
    train = session.config.train
    recorder = StatsRecorder(session.model, run, train.stats_every, session.trainer.optimizer, session.start_epoch)
    board = None
    if train.tensorboard and recorder.writes_files:  # one event file, from the main process
        board = TensorBoardLogger(session.model, run.path / "tensorboard", session.data.in_shape, recorder,
                                  session.start_epoch)
    group = ReporterGroup(reporter, recorder, board)
    try:
        return sessions.fit(session, run, group)
    finally:
        recorder.close()
        if board is not None:
            board.close()
