"""Experiment tracking: ``log.jsonl`` always, plus TensorBoard and Weights & Biases on request.

``--log jsonl,tensorboard,wandb`` names the backends (``jsonl`` is always on). Every record the
trainer logs goes to each: scalars under ``train/<term>`` (every loss term, ``lr``,
``images_per_s``) and ``val/<name>`` (``val_L1`` -> ``val/L1``), the step as the x axis; each
epoch's sample grid as the image ``samples``. Only rank 0 logs (the trainer makes a
:class:`RunLog` there only).

Resuming: the trainer resumes from the checkpoint of step S and truncates ``log.jsonl`` after S;
TensorBoard gets the same through the writer's ``purge_step=S + 1`` (readers drop the killed run's
events after S, so a curve has each step once); wandb through rewinding its run to S
(:mod:`p2ptools.training.wandb_backend` has the details and wandb's limits).

Layout: ``RUN_DIR/tensorboard/`` (event files; ``tensorboard --logdir RUN_DIR``), ``RUN_DIR/wandb/``
(wandb's files and the run id; offline runs upload with ``wandb sync RUN_DIR/wandb``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from p2ptools.errors import ConfigError, OutputError

if TYPE_CHECKING:
    import torch

TRACKERS = ("jsonl", "tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"
#: Record keys that are not curves.
_NOT_SCALARS = ("step", "epoch", "val_split")


def parse_trackers(text: str) -> tuple[str, ...]:
    """``"jsonl,tensorboard"`` -> ``("jsonl", "tensorboard")``; jsonl is always included; unknown names
    raise ConfigError naming the choices."""
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"--log: unknown tracker(s) {', '.join(unknown)}; choose from {', '.join(TRACKERS)} (comma-separated)")
    return tuple(n for n in TRACKERS if n == "jsonl" or n in names)


def valid_trackers(text: str) -> bool:
    """Whether ``text`` is a valid ``--log`` value (for the options' ``choices``)."""
    try:
        parse_trackers(text)
    except ConfigError:
        return False
    return True


def scalar_tag(key: str) -> str:
    """``"val_L1"`` -> ``"val/L1"``, ``"G_GAN"`` -> ``"train/G_GAN"``."""
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


def check_trackers(names: Sequence[str]) -> None:
    """Fail before training when a requested tracker's package is missing (one line naming the extra)."""
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("--log tensorboard needs the tensorboard package: pip install 'p2ptools[tracking]'") from None
    if "wandb" in names:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("--log wandb needs the wandb package: pip install 'p2ptools[wandb]'") from None


class RunLog:
    """The run's log: ``log.jsonl`` plus the requested trackers (module docstring).

    Args:
        run_dir: the run directory.
        trackers: parsed ``--log`` names.
        resume_step: the step training starts from (0, or the checkpoint's step).
        config: the run's settings for the trackers that keep them (wandb's run config).
    """

    def __init__(self, run_dir: Path, trackers: Sequence[str], *, resume_step: int = 0,
                 config: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "log.jsonl"
        check_trackers(trackers)
        self._tb = None
        if "tensorboard" in trackers:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=resume_step + 1 if resume_step else None)
        self._wandb = None
        if "wandb" in trackers:
            from p2ptools.training.wandb_backend import WandbTracker

            try:
                self._wandb = WandbTracker(self.run_dir, resume_step=resume_step, config=config)
            except BaseException:
                self.close(failed=True)  # the TensorBoard writer opened above
                raise

    def record(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with ``"step"``) to log.jsonl and send its numbers to the trackers."""
        append_log(self.path, record)
        step = int(record["step"])
        scalars = {scalar_tag(k): float(v) for k, v in record.items()
                   if k not in _NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)
                   and not (k == "lr" and "val_L1" in record)}  # the lr is a train curve
        if self._tb is not None:
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step)

    def image(self, step: int, grid: np.ndarray, tag: str = "samples") -> None:
        """Send a uint8 (H, W, 3) image (an epoch's sample grid) to the trackers."""
        if self._tb is not None:
            self._tb.add_image(tag, grid, step, dataformats="HWC")
        if self._wandb is not None:
            self._wandb.image(tag, grid, step)

    def close(self, failed: bool = False) -> None:
        """Flush and close the trackers; ``failed`` marks the wandb run as failed (exit code 1)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            tracker, self._wandb = self._wandb, None
            tracker.finish(exit_code=1 if failed else 0)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(failed=exc_type is not None)


class Meter:
    """Sums loss terms between log lines (on the device: no sync per step) and times images/s."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.images = 0
        self.start = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor], images: int) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.steps += 1
        self.images += images

    def flush(self) -> dict[str, float]:
        out = {k: round(v.item() / max(self.steps, 1), 6) for k, v in self.sums.items()}
        out["images_per_s"] = round(self.images / max(time.perf_counter() - self.start, 1e-9), 3)
        self.reset()
        return out


def append_log(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``log.jsonl`` (a kill leaves at most one cut line, which resume drops)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:  # a full disk: one line naming the log
        raise OutputError(path, exc) from None
