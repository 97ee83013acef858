"""Torch device names from the command line, checked once for every tool."""

from __future__ import annotations

import re

import torch

from p2ptools.errors import ConfigError

_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(name: str, flag: str = "--device") -> None:
    """Refuse a device name this machine cannot run on, before any output is written.

    Accepts ``auto``, ``cpu``, ``cuda``, ``cuda:N`` and ``mps``. Raises :class:`ConfigError` naming the
    missing device (``--device cuda:7: no such device; this machine has 1 CUDA device (cuda:0)``), or
    an unknown name.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{flag} {name!r}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            present = f"{count} CUDA device(s) (cuda:0 to cuda:{count - 1})" if count else "no CUDA device"
            raise ConfigError(f"{flag} {name}: no such device; this machine has {present} (use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{flag} mps: no such device; this machine has no Apple GPU (use auto or cpu)")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local rank's GPU if CUDA is available, else the CPU; other names are checked
    by :func:`check_device` (a bare ``cuda`` becomes ``cuda:<local_rank>``).

    Raises:
        ConfigError: an unknown device name, or a device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    check_device(name)
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
        check_device(f"cuda:{local_rank}")
    return device
