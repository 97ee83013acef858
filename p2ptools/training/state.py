"""The training state every GAN trainer saves and restores, and the run-directory step before it.

- :func:`prepare_run`: rank 0 checks the run directory against the new config (see
  :func:`p2ptools.training.checkpoint.prepare_run_dir`) and every rank learns the answer;
- :func:`seed_rank`: the per-rank torch/numpy/python seeds of the training streams (dropout, ...);
- :class:`Position`: steps done, the epoch, batches done in it;
- :func:`state_document`: the one JSON document a checkpoint holds beside the weights and optimiser
  tensors (position, schedulers, grad scaler, process layout, CPU threads; the
  :class:`~p2ptools.training.saving.Checkpointer` adds every rank's RNG);
- :func:`restore_training`: everything the checkpoint saved put back, so that a resumed run
  continues bit-exactly on the CPU.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.epoch_weights import drop_epoch_weights_after
from p2ptools.training.runtime import Runtime


@dataclass
class Position:
    """Where training stands: steps done, the current epoch (0-based) and batches done in it."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0


def prepare_run(run_dir: Path, config: dict[str, Any], *, resume: bool, overwrite: bool, runtime: Runtime) -> bool:
    """Run-directory checks on rank 0; returns whether training resumes from a checkpoint (all ranks)."""
    code, error = 0, None
    if runtime.is_main:
        try:
            code = 1 if ckpt.prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite) else 0
        except Exception as exc:  # share the failure so that other ranks do not wait forever
            code, error = 2, exc
    if runtime.distributed:
        t = torch.tensor([code], device=runtime.device if runtime.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        code = int(t.item())
    if error is not None:
        raise error
    if code == 2:
        raise ConfigError(f"{run_dir}: rank 0 could not prepare the run directory")
    return code == 1


def seed_rank(seed: int, rank: int) -> None:
    """Seed torch, numpy and python for this rank's training streams (independent per rank)."""
    seeds = np.random.SeedSequence([seed, rank]).generate_state(2)
    torch.manual_seed(int(seeds[0]))
    np.random.seed(int(seeds[1]))
    random.seed(int(seeds[1]))


def gather_rng(runtime: Runtime) -> list[dict[str, Any]]:
    """Every rank's RNG state (dropout masks differ per rank), collected on all ranks."""
    state = ckpt.rng_state()
    if not runtime.distributed:
        return [state]
    states: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(states, state)
    return states


def state_document(position: Position, schedulers: dict[str, Any], scaler: torch.amp.GradScaler,
                   runtime: Runtime) -> dict[str, Any]:
    """What a checkpoint saves besides tensors and RNG: the position, each scheduler's state, the
    grad scaler's (fp16 only), the process layout and the CPU thread count (CPU sums split over
    threads add in another order: a resumed CPU run uses the same count)."""
    return {
        "step": position.step, "epoch": position.epoch, "batches_done": position.batches_done,
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "world_size": runtime.world_size, "distributed": runtime.distributed, "cpu_threads": torch.get_num_threads()}


def restore_training(run_dir: Path, runtime: Runtime, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                     schedulers: dict[str, Any], scaler: torch.amp.GradScaler) -> Position:
    """Load the latest checkpoint into everything it saved; returns its position.

    On rank 0 also truncates ``log.jsonl`` to the checkpoint's step and removes per-epoch weight
    files of later epochs (written after the checkpoint by the stopped run; the resumed run writes
    them again).
    """
    state = ckpt.load_checkpoint(run_dir, nets, optimizers)
    for k, sched in schedulers.items():
        sched.load_state_dict(state["schedulers"][k])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if runtime.rank < len(state["rng"]):
        ckpt.set_rng_state(state["rng"][runtime.rank])
    if runtime.device.type == "cpu" and state.get("cpu_threads") and state["cpu_threads"] != torch.get_num_threads():
        torch.set_num_threads(state["cpu_threads"])  # CPU sums split over threads: same count, same bits
    position = Position(state["step"], state["epoch"], state["batches_done"])
    if runtime.is_main:
        ckpt.truncate_log(Path(run_dir) / "log.jsonl", position.step)
        drop_epoch_weights_after(run_dir, position.epoch)
    return position
