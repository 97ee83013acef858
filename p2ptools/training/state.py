"""The run-directory and resume steps every GAN trainer takes, shared by the model plugins.

- :func:`prepare_run`: rank 0 checks the run directory against the new config (see
  :func:`p2ptools.training.checkpoint.prepare_run_dir`) and every rank learns the answer;
- :func:`seed_rank`: the per-rank torch/numpy/python seeds of the training streams (dropout, ...);
- :func:`save_training` / :func:`restore_training`: everything that decides the future (weights,
  optimisers, schedulers, grad scaler, step, epoch, position in the epoch, every rank's RNG), so
  that a resumed run continues bit-exactly on the CPU.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.loop import gather_rng
from p2ptools.training.runtime import Runtime


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


def save_training(run_dir: Path, runtime: Runtime, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                  schedulers: dict[str, Any], scaler: torch.amp.GradScaler, *, step: int, epoch: int, batches_done: int,
                  extra: dict[str, Any] | None = None) -> None:
    """Save a complete checkpoint (rank 0 writes; every rank contributes its RNG state)."""
    rng = gather_rng(runtime)
    if runtime.is_main:
        ckpt.save_checkpoint(run_dir, nets, optimizers, {
            "step": step, "epoch": epoch, "batches_done": batches_done,
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "world_size": runtime.world_size, "cpu_threads": torch.get_num_threads(), "rng": rng, **(extra or {})})


def restore_training(run_dir: Path, runtime: Runtime, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                     schedulers: dict[str, Any], scaler: torch.amp.GradScaler) -> dict[str, Any]:
    """Load the latest checkpoint into everything :func:`save_training` saved; returns its JSON state
    (``step``, ``epoch``, ``batches_done``, ...). Truncates ``log.jsonl`` to the checkpoint's step."""
    state = ckpt.load_checkpoint(run_dir, nets, optimizers)
    for k, sched in schedulers.items():
        sched.load_state_dict(state["schedulers"][k])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if runtime.rank < len(state["rng"]):
        ckpt.set_rng_state(state["rng"][runtime.rank])
    if runtime.device.type == "cpu" and state.get("cpu_threads") and state["cpu_threads"] != torch.get_num_threads():
        torch.set_num_threads(state["cpu_threads"])  # CPU sums split over threads: same count, same bits
    if runtime.is_main:
        ckpt.truncate_log(Path(run_dir) / "log.jsonl", state["step"])
    return state
