"""Torch device names from the command line, checked once for every tool."""

from __future__ import annotations

import torch

from p2ptools.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local rank's GPU if CUDA is available, else the CPU; other names are checked
    to exist (a bare ``cuda`` becomes ``cuda:<local_rank>``).

    Raises:
        ConfigError: an unknown device name, CUDA absent, or a GPU index out of range.
    """
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"--device: invalid device {name!r} ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device
