"""The epoch loop every GAN trainer runs, with the plugin's step and epoch-end as functions.

:func:`run_epochs` owns what does not depend on the model: resuming inside an epoch (the sampler
skips what was done), averaged loss lines in ``log.jsonl`` every ``log_every`` steps, the progress
bar, checkpoints (every ``checkpoint_every`` steps, at ``max_steps`` and at each epoch end), and
stopping on SIGINT/SIGTERM at a step boundary with a checkpoint (all ranks at the same step). The
plugin passes :class:`LoopHooks`: its training step, its epoch-end work (lr schedule, validation,
samples) and how to save.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from p2ptools.progress import StatsColumn, console, make_progress
from p2ptools.training.loop import Meter, append_log
from p2ptools.training.runtime import Runtime, any_rank, stop_on_signals


@dataclass
class Position:
    """Where training stands: steps done, the current epoch (0-based) and batches done in it."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0


@dataclass(frozen=True)
class LoopHooks:
    """The plugin's parts of the loop.

    Attributes:
        step: ``batch -> (detached loss terms, images in the batch)``: one optimisation step.
        epoch_end: ``epoch (0-based) -> None``: lr schedule, validation, samples (called on every rank).
        save: ``(position) -> None``: a complete checkpoint of everything that decides the future.
        lr: ``() -> float``: the learning rate to log.
        epoch_start: ``position -> None``, optional: work before an epoch's first batch (or its resumed part).
    """

    step: Callable[[dict], tuple[dict[str, torch.Tensor], int]]
    epoch_end: Callable[[int], None]
    save: Callable[[Position], None]
    lr: Callable[[], float]
    epoch_start: Callable[[Position], None] | None = None


@dataclass(frozen=True)
class LoopSettings:
    """How long and how often: epochs in all, a step limit (0: none), log and checkpoint cadence."""

    total_epochs: int
    batch_size: int
    max_steps: int = 0
    log_every: int = 20
    checkpoint_every: int = 0
    title: str = "train"
    progress: bool = True
    stall_at: int = 0  # test hook: wait (until a signal) after this step


def run_epochs(loader: Any, sampler: Any, position: Position, settings: LoopSettings, hooks: LoopHooks, runtime: Runtime,
               run_dir: Path) -> Position:
    """Train from ``position`` to the end (or ``max_steps``); returns the final position.

    ``sampler`` is a :class:`p2ptools.training.data.ResumableSampler` of ``loader``. Raises
    KeyboardInterrupt after saving when a stop signal arrives.
    """
    main = runtime.is_main
    steps_per_epoch = math.ceil(sampler.num_samples / settings.batch_size)
    total_steps = steps_per_epoch * settings.total_epochs
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    log_path = Path(run_dir) / "log.jsonl"
    bar = make_progress(settings.progress and main, StatsColumn())
    meter = Meter()
    pos = position
    with stop_on_signals() as stop, bar:
        task = bar.add_task(settings.title, total=total_steps, completed=pos.step, stats="")
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
                    record = {"step": pos.step, "epoch": pos.epoch + 1, **meter.flush(), "lr": hooks.lr()}
                    append_log(log_path, record)
                    bar.update(task, stats=" ".join(f"{k} {v:.3g}" for k, v in record.items() if k not in ("step", "epoch", "lr")))
                bar.update(task, completed=pos.step)
                while pos.step == settings.stall_at and not stop:
                    time.sleep(0.05)
                # ranks agree on stopping (a collective: every 10 steps under DDP, to spare a sync per step)
                stopping = any_rank(bool(stop), runtime) if not runtime.distributed or pos.step % 10 == 0 else False
                finished = pos.step >= total_steps
                mid_epoch = pos.batches_done < steps_per_epoch
                if stopping or (finished and mid_epoch) or (
                        settings.checkpoint_every and pos.step % settings.checkpoint_every == 0 and mid_epoch):
                    hooks.save(pos)
                if stopping:
                    bar.stop()  # the bar's last frame stays above the message, not redrawn below it
                    if main:
                        console.print(f"interrupted: checkpoint saved at step {pos.step}; continue with "
                                      f"`p2ptools train --resume {run_dir}`")
                    raise KeyboardInterrupt(f"training stopped by signal {stop.signal} at step {pos.step}")
                if finished:
                    break
            if pos.batches_done < steps_per_epoch:
                break  # max_steps reached mid-epoch (already saved)
            hooks.epoch_end(pos.epoch)
            pos.epoch, pos.batches_done = pos.epoch + 1, 0
            hooks.save(pos)
    return pos
