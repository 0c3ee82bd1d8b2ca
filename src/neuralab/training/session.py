"""A training session: build every object a configuration names, then train, checkpoint and test.

`prepare` validates the whole configuration and reads every data file before anything is
written, so a bad value or file stops the command with nothing in the run directory.
`fit` then trains, saving a resumable checkpoint after every epoch.
"""

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neuralab.config import RunConfig, to_dict
from neuralab.data.augment import build_augment
from neuralab.data.batches import BatchLoader
from neuralab.data.prepare import PreparedData, Split, build_loader, prepare_test_data, prepare_training_data
from neuralab.data.streaming import StreamedSplit, StreamLoader
from neuralab.models import build_model
from neuralab.nn import build_loss, build_optimizer, build_scheduler
from neuralab.training.checkpoint import load_checkpoint, save_checkpoint, save_weights
from neuralab.training.devices import (
    autocast_dtype,
    build_grad_scaler,
    choose_threads,
    compile_model,
    flush_subnormals,
    memory_format,
    resolve_device,
    set_deterministic,
)
from neuralab.training.distributed import (
    SINGLE_PROCESS,
    DistributedContext,
    process_device,
    sync_batch_norm,
    wrap_model,
)
from neuralab.training.engine import EpochResult, Reporter, Trainer
from neuralab.training.evaluation import evaluate_classifier, evaluate_segmenter
from neuralab.training.runs import RunDir

logger = logging.getLogger(__name__)

# Schedules that end at a fixed step restart over the added epochs when a finished run is
# extended; the others continue where they were.
RESTARTING_SCHEDULERS = ("cosine", "one_cycle")


@dataclass
class Session:
    """Built objects for one run, ready to train."""

    config: RunConfig
    data: PreparedData
    test: Split | StreamedSplit | None  # None when the data set has no test split (a folder without test/)
    model: nn.Module
    trainer: Trainer
    train_loader: BatchLoader | StreamLoader
    val_loader: BatchLoader | StreamLoader | None
    generator: torch.Generator
    threads: int
    device: torch.device
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    context: DistributedContext = SINGLE_PROCESS  # this process's rank under torchrun


def prepare(config: RunConfig, context: DistributedContext = SINGLE_PROCESS) -> Session:
    """Build everything `config` names; raise ValueError or FileNotFoundError on any bad value or file.

    Under torchrun, `context` gives this process's rank: it trains on its share of every batch,
    and `batch_size` and `eval_batch_size` count the samples of one process.
    """
    train_config, optim_config = config.train, config.optim
    _check_positive(batch_size=train_config.batch_size, epochs=train_config.epochs,
                    eval_batch_size=train_config.eval_batch_size, stats_every=train_config.stats_every)
    # Before any parallel work, so that the CPU threads torch starts for it inherit the float mode.
    flush_subnormals()
    device = process_device(context, resolve_device(train_config.device))
    precision_dtype = autocast_dtype(train_config.precision, device)
    set_deterministic(train_config.deterministic, device)
    data = prepare_training_data(config.data)
    test = prepare_test_data(config.data, data.classes, data.in_shape)

    torch.manual_seed(train_config.seed)
    model = build_model(config.model.name, data.in_shape, len(data.classes), **config.model.options)
    _check_task(config, model, data)
    loss_fn = build_loss(train_config.loss, model.head)
    _check_loss_skips_ignored(loss_fn, train_config.loss, data.ignore_index, [data.train, data.val, test],
                              augmented=config.data.augment != "none")
    threads = train_config.threads
    if threads is None:
        threads = choose_threads(model, data.in_shape, train_config.batch_size, processes=context.local_world_size)
    _check_positive(threads=threads)
    torch.set_num_threads(threads)
    model_format = memory_format(model)
    channels_last = model_format == torch.channels_last
    model.to(device, memory_format=model_format)
    model = sync_batch_norm(model, context, device)
    # NOTE: under torchrun every rank seeds torch's global generator alike, so the ranks draw the
    # same dropout masks for the different samples of their shares.

    generator = torch.Generator().manual_seed(train_config.seed)
    train_loader, val_loader = _build_loaders(config, data, generator, context)

    optimizer = build_optimizer(optim_config.optimizer, model.parameters(), lr=optim_config.lr,
                                momentum=optim_config.momentum, nesterov=optim_config.nesterov,
                                weight_decay=optim_config.weight_decay, fused=device.type in ("cpu", "cuda"))
    scheduler = _build_scheduler(config, optimizer, len(train_loader), train_config.epochs)
    eval_model = compile_model(model) if train_config.compile else model
    trainer = Trainer(wrap_model(eval_model, context, device), loss_fn, optimizer, scheduler, device,
                      ignore_index=data.ignore_index,
                      binary_threshold=0.5 if model.head in ("sigmoid", "softmax") else 0.0,
                      channels_last=channels_last, autocast_dtype=precision_dtype,
                      scaler=build_grad_scaler(train_config.precision, device), eval_model=eval_model)
    # `model` stays the plain module, so checkpoints never carry DDP's "module." or torch.compile's
    # "_orig_mod." key prefixes.
    return Session(config, data, test, model, trainer, train_loader, val_loader, generator, threads, device,
                   context=context)


def _build_loaders(config: RunConfig, data: PreparedData, generator: torch.Generator,
                   context: DistributedContext) -> tuple[BatchLoader | StreamLoader, BatchLoader | StreamLoader | None]:
    """Return the (training, validation) loaders, each yielding this rank's share of every batch.

    Every rank shuffles and augments with the same seeded generator, so all ranks cut the same
    global batches.
    """
    augment = build_augment(config.data.augment, fill=data.background, max_shift=config.data.max_shift,
                            mask_fill=data.mask_fill)
    train_loader = build_loader(data.train, config.train.batch_size, shuffle=True, generator=generator,
                                augment=augment, rank=context.rank, world_size=context.world_size)
    if data.val is None:
        return train_loader, None
    val_loader = build_loader(data.val, config.train.eval_batch_size, shuffle=False,
                              rank=context.rank, world_size=context.world_size)
    return train_loader, val_loader


def _check_task(config: RunConfig, model: nn.Module, data: PreparedData) -> None:
    """Raise ValueError when a segmentation model meets class labels, or a classifier meets masks."""
    if (model.task == "segmentation") != (data.task == "segmentation"):
        raise ValueError(f"model {config.model.name!r} is a {model.task} model but data set {config.data.dataset!r} "
                         f"is a {data.task} data set; pick a matching model (see `neuralab list models`)")


def _check_loss_skips_ignored(loss_fn: nn.Module, name: str, ignore_index: int | None,
                              splits: list[Split | StreamedSplit | None], augmented: bool) -> None:
    """Raise ValueError when targets contain `ignore_index` but the loss would read it as a class."""
    if ignore_index is None or getattr(loss_fn, "ignore_index", None) == ignore_index:
        return
    if augmented:
        raise ValueError(f"augmentation labels the mask pixels it shifts in from outside an image with the ignore "
                         f"value {ignore_index}, but loss {name!r} cannot skip them; use --loss cross_entropy_dice "
                         "or --loss dice, or --augment none")
    if any(split is not None and split.contains_target(ignore_index) for split in splits):
        raise ValueError(f"the masks mark pixels to ignore with value {ignore_index}, but loss {name!r} cannot skip "
                         "them; use --loss cross_entropy_dice or --loss dice")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
    optim = config.optim
    return build_scheduler(optim.scheduler, optimizer, steps_per_epoch, epochs, step_epochs=optim.step_epochs,
                           gamma=optim.gamma, warmup_fraction=optim.warmup_fraction)


def restore(session: Session, run: RunDir) -> None:
    """Load the run's checkpoint into the session, so `fit` continues exactly where it stopped.

    When the configuration asks for more epochs than the run was started with, a cosine or
    one_cycle schedule restarts from the configured learning rate over the added epochs;
    step and none schedules continue unchanged.
    """
    state = load_checkpoint(run.checkpoint_path)
    trainer = session.trainer
    session.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    planned_epochs = state["config"]["train"]["epochs"]
    added_epochs = session.config.train.epochs - planned_epochs
    if added_epochs > 0 and session.config.optim.scheduler in RESTARTING_SCHEDULERS:
        for group in trainer.optimizer.param_groups:
            group["lr"] = session.config.optim.lr
        trainer.scheduler = _build_scheduler(session.config, trainer.optimizer, len(session.train_loader),
                                             session.config.train.epochs - state["epoch"])
    elif trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.scaler is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    session.generator.set_state(state["rng"]["data"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    session.start_epoch = state["epoch"]
    session.history = list(state["history"])


def _checkpoint_state(session: Session, epoch: int) -> dict[str, Any]:
    trainer = session.trainer
    state = {
        "format": "neuralab-checkpoint",
        "epoch": epoch,
        "config": to_dict(session.config),
        "model": session.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "rng": _rng_states(session),
        "history": session.history,
    }
    if trainer.scaler is not None:
        state["scaler"] = trainer.scaler.state_dict()
    return state


def _rng_states(session: Session) -> dict[str, Any]:
    """Return every random-number state that training draws from: data order, dropout (CPU and CUDA)."""
    states: dict[str, Any] = {"data": session.generator.get_state(), "torch": torch.get_rng_state()}
    if session.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def weights_metadata(session: Session) -> dict[str, Any]:
    """Return what a weights file needs to be usable on its own: architecture and preprocessing."""
    config, data = session.config, session.data
    return {
        "format": "neuralab-weights",
        "recipe": config.recipe,
        "model": {"name": config.model.name, "options": config.model.options,
                  "in_shape": list(data.in_shape), "num_classes": len(data.classes)},
        "head": session.model.head,
        "task": session.model.task,
        "classes": list(data.classes),
        "ignore_index": data.ignore_index,
        "preprocessing": {"dataset": config.data.dataset, "mean": data.mean, "std": data.std},
    }


def _check_finite_weights(model: nn.Module, epoch: int) -> None:
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            raise FloatingPointError(f"parameter {name} is not finite after epoch {epoch}; "
                                     "no checkpoint was written with these weights. Lower the learning rate (--lr)")


def fit(session: Session, run: RunDir, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train from `session.start_epoch` to the configured epochs, then test; return the summary."""
    trainer = session.trainer
    for epoch in range(session.start_epoch + 1, session.config.train.epochs + 1):
        if reporter is not None:
            reporter.start_epoch(epoch, len(session.train_loader))
        train_loss, train_accuracy, samples, seconds = trainer.train_epoch(session.train_loader, epoch, reporter)
        val = trainer.evaluate(session.val_loader) if session.val_loader is not None else None
        result = EpochResult(epoch, train_loss, train_accuracy, val.loss if val else None,
                             val.accuracy if val else None, trainer.current_lr(), seconds,
                             samples / seconds if seconds > 0 else math.inf)
        session.history.append(dataclasses.asdict(result))
        _check_finite_weights(session.model, epoch)
        if session.context.is_main:  # every rank has the same weights, so rank 0 alone writes them
            save_checkpoint(run.checkpoint_path, _checkpoint_state(session, epoch))
            run.write_metrics(session.history)
        if reporter is not None:
            reporter.epoch_done(result)

    if session.context.is_main:
        save_weights(run.weights_path, session.model, weights_metadata(session))
    return finish(session, run)


def finish(session: Session, run: RunDir) -> dict[str, Any]:
    """Compute the final test numbers and write the run's summary."""
    started = time.perf_counter()
    metrics = _test_metrics(session)
    history = session.history
    summary = {
        "recipe": session.config.recipe,
        "epochs": len(history),
        "seed": session.config.train.seed,
        "threads": session.threads,
        "train_seconds": sum(row["seconds"] for row in history),
        "final_val_accuracy": history[-1]["val_accuracy"] if history else None,
        **metrics,
        "test_seconds": time.perf_counter() - started,
    }
    if session.context.is_main:
        run.write_summary(summary)
    return summary


def _test_metrics(session: Session) -> dict[str, Any]:
    """Return the test metrics that fit the data set's task, or a note when it has no test split."""
    data = session.data
    if session.test is None:
        return {"task": data.task, "test_samples": 0,
                "test_note": f"no test split: {session.config.data.data_dir} has no test/ sub-folder"}
    loader = build_loader(session.test, session.config.train.eval_batch_size, shuffle=False,
                          rank=session.context.rank, world_size=session.context.world_size)
    if data.task == "segmentation":
        return evaluate_segmenter(session.trainer, loader, data.classes, data.ignore_index)
    return evaluate_classifier(session.trainer, loader, data.classes)
