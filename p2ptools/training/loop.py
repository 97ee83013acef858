"""Pieces of a training loop that do not depend on the model: lr rule, freezing, meters, logs, RNG.

A plugin's trainer stays readable top to bottom by calling these small functions; each receives
everything it uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from p2ptools.errors import OutputError
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.runtime import Runtime


def lr_lambda(epochs: int, epochs_decay: int):
    """The reference's rule: factor 1 for ``epochs`` epochs, then linear decay towards 0."""
    def rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)
    return rule


def set_requires_grad(net: nn.Module | None, flag: bool) -> None:
    """Freeze or unfreeze a network's parameters."""
    if net is not None:
        for p in net.parameters():
            p.requires_grad_(flag)


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


def gather_rng(runtime: Runtime) -> list[dict[str, Any]]:
    """Every rank's RNG state (dropout masks differ per rank), collected on all ranks."""
    state = ckpt.rng_state()
    if not runtime.distributed:
        return [state]
    states: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(states, state)
    return states
