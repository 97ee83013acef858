"""When and where checkpoints are written: a background writer thread and a wall-clock cadence.

Saving the full training state (weights plus twice their size of Adam moments) can cost more
than an epoch on a GPU. So a trainer copies the state off the device (a
:class:`~p2ptools.training.checkpoint.CheckpointSnapshot`, the only part that stops training) and
hands the writing to a :class:`BackgroundWriter`, and writes the full state only every
``--checkpoint-minutes`` (:class:`SaveClock`); the end of the run and SIGINT/SIGTERM always write.

Example:
    >>> with BackgroundWriter() as writer:
    ...     writer.submit(print, "written in the background")
    written in the background
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p2ptools.torchstate import module_tensors
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.epoch_weights import write_epoch_weights
from p2ptools.training.state import gather_rng
from p2ptools.training.runtime import Runtime


class BackgroundWriter:
    """Runs one write job at a time in a background thread, in submission order.

    :meth:`submit` first waits for the previous job (so at most one snapshot waits in memory and
    checkpoints land in order), then starts the new one. An exception of a job is raised on the
    training thread, at the next :meth:`submit`, :meth:`wait` or when the ``with`` block ends.
    Leaving the ``with`` block always waits for the running job, also when the block raised (a
    SIGINT checkpoint must be complete before the process exits).

    Args:
        background: False runs every job at once on the calling thread (the old synchronous way).
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.jobs_done = 0

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Wait for the running job, then run ``job(*args)`` (in the background thread)."""
        self.wait()
        if not self.background:
            job(*args)
            self.jobs_done += 1
            return
        self._thread = threading.Thread(target=self._run, args=(job, args), name="p2ptools-checkpoint-writer", daemon=False)
        self._thread.start()

    def _run(self, job: Callable[..., Any], args: tuple) -> None:
        try:
            job(*args)
            self.jobs_done += 1
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    @property
    def busy(self) -> bool:
        """Whether a job is running now."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the running job (if any) has finished; raise its exception, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.wait()
            return
        try:
            self.wait()
        except BaseException as write_error:  # the block's own exception stays the one raised
            exc.__context__ = write_error


class SaveClock:
    """Whether the full state is due: ``minutes`` of wall time since the last full save.

    ``minutes == 0`` means "at every opportunity the trainer offers" (each epoch end). The clock
    starts when it is made (the start or resume of a run).
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        if minutes < 0:
            raise ValueError(f"minutes must not be negative, got {minutes}")
        self.minutes = minutes
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        """True when at least ``minutes`` have passed since the last :meth:`reset` (or creation)."""
        return self._clock() - self._last >= self.minutes * 60.0

    def reset(self) -> None:
        """A full save was just taken."""
        self._last = self._clock()


class Checkpointer:
    """A trainer's checkpoints: full-state snapshots written by a :class:`BackgroundWriter`, a
    :class:`SaveClock` for ``--checkpoint-minutes``, and per-epoch weight files.

    :meth:`save` is collective under DDP (every rank's RNG state is gathered); only rank 0 copies
    the state off the device and writes. Use it as a context manager: leaving the block waits
    for the last write.

    Args:
        run_dir: the run directory.
        runtime: this process (rank, world size).
        nets, optimizers: what a checkpoint holds (plain modules, not DDP wrappers).
        minutes: ``--checkpoint-minutes`` (0: whenever the trainer offers, i.e. every epoch end).
        background: False writes on the training thread (for comparisons).
    """

    def __init__(self, run_dir: Path, runtime: Runtime, nets: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], minutes: float, background: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.runtime = runtime
        self.nets = nets
        self.optimizers = optimizers
        self.clock = SaveClock(minutes)
        self.writer = BackgroundWriter(background)
        self.saved_steps: list[int] = []  # steps of the full checkpoints submitted, in order

    def due(self) -> bool:
        """Whether ``minutes`` have passed since the last full save (this rank's clock)."""
        return self.clock.due()

    def save(self, state: dict[str, Any]) -> None:
        """Snapshot the full state plus every rank's RNG and write it in the background."""
        state = {**state, "rng": gather_rng(self.runtime)}
        if self.runtime.is_main:
            snapshot = ckpt.snapshot_checkpoint(self.nets, self.optimizers, state)
            self.writer.submit(ckpt.write_checkpoint, self.run_dir, snapshot)
            self.saved_steps.append(snapshot.step)
        self.clock.reset()

    def save_epoch_weights(self, epoch: int, names: tuple[str, ...] = ("G",)) -> None:
        """Write ``checkpoints/epoch_<epoch>_<name>.safetensors`` (weights only) for ``names``."""
        if not self.runtime.is_main:
            return
        copies = {name: module_tensors(self.nets[name], copy=True) for name in names}
        self.writer.submit(_write_epoch_files, self.run_dir, epoch, copies)

    def wait(self) -> None:
        """Block until everything submitted is on disk."""
        self.writer.wait()

    def __enter__(self) -> Checkpointer:
        self.writer.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.__exit__(exc_type, exc, tb)


def _write_epoch_files(run_dir: Path, epoch: int, copies: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, tensors in copies.items():
        write_epoch_weights(run_dir, epoch, tensors, name)
