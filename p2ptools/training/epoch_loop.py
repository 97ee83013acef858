"""The epoch loop every GAN trainer runs: the plugin passes its step and its validation.

:func:`run_epochs` owns everything that does not depend on the model:

- resuming inside an epoch (the sampler skips what was done);
- averaged loss lines every ``--log-every`` steps in ``log.jsonl`` and the trackers
  (``--log jsonl,tensorboard,wandb``, :class:`~p2ptools.training.tracking.RunLog`) and the progress bar;
- at each epoch end: validation L1 and the sample grid (rank 0; the value is broadcast when the
  plateau policy needs it), the lr schedulers (every ``--lr-policy``), the epoch's generator
  (``--save-epoch-freq``);
- checkpoints through a :class:`~p2ptools.training.saving.Checkpointer` (copied off the device, written
  in a background thread): when ``--checkpoint-minutes`` have passed (checked after each step and at
  each epoch end), every ``--checkpoint-every`` steps, at the end and on SIGINT/SIGTERM;
- stopping on SIGINT/SIGTERM at a step boundary with a checkpoint, all ranks at the same step (the
  ranks agree every 10 steps under DDP, to spare a collective per step).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from p2ptools.progress import StatsColumn, console, make_progress
from p2ptools.training.options import TrainOptions
from p2ptools.training.runtime import any_rank, any_ranks, broadcast_float, stop_on_signals
from p2ptools.training.samples import write_samples
from p2ptools.training.saving import Checkpointer
from p2ptools.training.schedules import needs_metric, step_scheduler
from p2ptools.training.session import Loaders, Session
from p2ptools.training.state import Position, state_document
from p2ptools.training.tracking import Meter, RunLog, parse_trackers


@dataclass(frozen=True)
class LoopHooks:
    """The plugin's parts of the loop.

    Attributes:
        step: ``batch -> (detached loss terms, images in the batch)``: one optimisation step.
        validate: ``() -> (validation L1, sample grid or None)``, called on rank 0 at each epoch end.
        epoch_start: ``position -> None``, optional: work before an epoch's first batch (or its resumed part).
    """

    step: Callable[[dict], tuple[dict[str, torch.Tensor], int]]
    validate: Callable[[], tuple[float, np.ndarray | None]]
    epoch_start: Callable[[Position], None] | None = None


@dataclass(frozen=True)
class LoopSettings:
    """How long and how often (the shared :class:`~p2ptools.training.options.TrainOptions` fields)."""

    title: str
    total_epochs: int
    batch_size: int
    max_steps: int = 0
    log_every: int = 20
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0
    save_epoch_freq: int = 0
    trackers: tuple[str, ...] = ("jsonl",)
    workers: int = 0
    progress: bool = True
    stall_at: int = 0  # test hook: wait (until a signal) after this step

    @classmethod
    def from_options(cls, options: TrainOptions, *, title: str, progress: bool, stall_at: int = 0) -> LoopSettings:
        return cls(title=title, total_epochs=options.epochs + options.epochs_decay, batch_size=options.batch_size,
                   max_steps=options.max_steps, log_every=options.log_every, checkpoint_every=options.checkpoint_every,
                   checkpoint_minutes=options.checkpoint_minutes, save_epoch_freq=options.save_epoch_freq,
                   trackers=parse_trackers(options.log), workers=options.workers, progress=progress, stall_at=stall_at)


def _stats(record: dict[str, Any]) -> str:
    return " ".join(f"{k.replace('images_per_s', 'images/s')} {v:.3g}" for k, v in record.items() if k not in ("step", "epoch", "lr"))


def run_epochs(session: Session, data: Loaders, settings: LoopSettings, hooks: LoopHooks) -> Position:
    """Train from ``session.position`` to the end (or ``max_steps``); returns the final position.

    Raises KeyboardInterrupt after saving a checkpoint when a stop signal arrives.
    """
    runtime, main, run_dir = session.runtime, session.is_main, session.run_dir
    sampler, loader = data.sampler, data.train
    pos = session.position
    steps_per_epoch = math.ceil(sampler.num_samples / settings.batch_size)
    total_steps = steps_per_epoch * settings.total_epochs
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    checkpointer = Checkpointer(run_dir, runtime, session.nets, session.optimizers, settings.checkpoint_minutes)

    def save() -> None:
        checkpointer.save(state_document(pos, session.schedulers, session.scaler, runtime))

    run_log = RunLog(run_dir, settings.trackers, resume_step=pos.step, config=session.config) if main else contextlib.nullcontext()
    bar = make_progress(settings.progress and main, StatsColumn())
    meter = Meter()
    evaluated = False
    with stop_on_signals() as stop, bar, checkpointer, run_log:
        task = bar.add_task(settings.title, total=total_steps, completed=pos.step, stats="")
        terms_text, val_text = "", ""  # the bar's status: latest averaged losses, latest val_L1

        def show(*parts: str) -> None:
            bar.update(task, completed=pos.step, stats=" ".join(filter(None, parts)))

        while pos.epoch < settings.total_epochs and pos.step < total_steps:
            if hooks.epoch_start is not None:
                hooks.epoch_start(pos)
            sampler.set_epoch(pos.epoch)
            sampler.set_start(pos.batches_done * settings.batch_size)
            for batch in loader:
                terms, images = hooks.step(batch)
                pos.step, pos.batches_done = pos.step + 1, pos.batches_done + 1
                meter.add(terms, images * runtime.world_size)
                if pos.step % settings.log_every == 0 and main:
                    record = {"step": pos.step, "epoch": pos.epoch + 1, **meter.flush(), "lr": session.lr()}
                    run_log.record(record)
                    terms_text = _stats(record)
                    show(f"epoch {pos.epoch + 1}/{settings.total_epochs}", terms_text, val_text)
                else:
                    bar.update(task, completed=pos.step)
                while pos.step == settings.stall_at and not stop:
                    time.sleep(0.05)
                timely = settings.checkpoint_minutes > 0 and checkpointer.due()
                stopping, timely = (any_ranks((bool(stop), timely), runtime) if not runtime.distributed or pos.step % 10 == 0
                                    else (False, False))
                finished = pos.step >= total_steps
                mid_epoch = pos.batches_done < steps_per_epoch
                every = settings.checkpoint_every and pos.step % settings.checkpoint_every == 0
                if stopping or (mid_epoch and (finished or every or timely)):
                    save()
                if stopping:
                    checkpointer.wait()
                    bar.stop()  # the bar's last frame stays above the message, not redrawn below it
                    if main:
                        console.print(f"interrupted: checkpoint saved at step {pos.step}; continue with "
                                      f"`p2ptools train --resume {run_dir}`")
                    raise KeyboardInterrupt(f"training stopped by signal {stop.signal} at step {pos.step}")
                if finished:
                    break
            if pos.batches_done < steps_per_epoch:
                break  # max_steps reached mid-epoch (already saved)
            # Epoch end: validation, next lr (plateau follows rank 0's validation L1), samples, checkpoint.
            val_l1, grid = None, None
            if main:
                if not evaluated and settings.workers:
                    checkpointer.wait()  # no thread running while the validation loader forks its workers
                evaluated = True
                val_l1, grid = hooks.validate()
            if any(needs_metric(sched) for sched in session.schedulers.values()):
                val_l1 = broadcast_float(val_l1, runtime)
            for sched in session.schedulers.values():
                step_scheduler(sched, val_l1)
            if main:
                if grid is not None:
                    write_samples(run_dir / "samples", pos.epoch + 1, grid, val_l1)
                    run_log.image(pos.step, grid)
                run_log.record({"step": pos.step, "epoch": pos.epoch + 1, "val_L1": round(val_l1, 6),
                                "val_split": data.val_split or "train", "lr": session.lr()})
                val_text = f"val_L1 {val_l1:.4g}"
                show(f"epoch {pos.epoch + 1}/{settings.total_epochs} done", terms_text, val_text)
            pos.epoch, pos.batches_done = pos.epoch + 1, 0
            if settings.save_epoch_freq and pos.epoch % settings.save_epoch_freq == 0:
                checkpointer.save_epoch_weights(pos.epoch)
            last = pos.epoch >= settings.total_epochs or pos.step >= total_steps
            if last or any_rank(checkpointer.due(), runtime):
                save()
    return pos
