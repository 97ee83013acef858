"""Where a sweep's cells run. Every backend runs the same :func:`p2ptools.sweep.cell.run_cell`.

A backend is an object with::

    def run_cells(self, sweep_dir: Path, cells: Sequence[tuple[str, int]],
                  on_outcome: Callable[[tuple[str, int], dict], None]) -> None

that runs every (row, seed) of ``cells`` and calls ``on_outcome(cell, state)`` with each cell's
state record (:func:`run_cell`'s return value) as it finishes, in the driver's process. A failed
cell does not stop the others. Its own options go to its constructor:

- ``local`` (:class:`p2ptools.sweep.backends.local.LocalBackend`): ``jobs``;
- ``ray`` (``p2ptools.sweep.backends.ray.RayBackend``): ``address``, ``num_gpus``;
- ``slurm`` (``p2ptools.sweep.backends.slurm.SlurmBackend``): ``partition``, ``time``,
  ``gpus_per_job``, ``account``, ``executor`` ("slurm" or "local").

Ray and submitit are optional extras: :func:`get_backend` says which one to install, in one line,
before any cell starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from p2ptools.errors import ConfigError

#: name -> (module, class, the package it needs or None, the optional extra that installs it)
BACKENDS: dict[str, tuple[str, str, str | None, str | None]] = {
    "local": ("p2ptools.sweep.backends.local", "LocalBackend", None, None),
    "ray": ("p2ptools.sweep.backends.ray", "RayBackend", "ray", "ray"),
    "slurm": ("p2ptools.sweep.backends.slurm", "SlurmBackend", "submitit", "slurm"),
}


class Backend(Protocol):
    """What the driver needs of a backend (see the module docstring)."""

    def run_cells(self, sweep_dir: Path, cells: Sequence[tuple[str, int]],
                  on_outcome: Callable[[tuple[str, int], dict], None]) -> None: ...


def require_extra(package: str, extra: str, backend: str) -> None:
    """Import ``package`` or raise the one-line :class:`ConfigError` naming the extra to install."""
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"the {backend} backend needs the optional extra: pip install 'p2ptools[{extra}]'") from None


def get_backend(name: str, **options: Any) -> Backend:
    """The backend ``name`` (``local``, ``ray``, ``slurm``) built with its ``options``.

    Raises:
        ConfigError: an unknown name (listing the known ones), or a backend whose optional extra is
            not installed (``pip install 'p2ptools[ray]'``).
    """
    if name not in BACKENDS:
        raise ConfigError(f"--backend: invalid value {name!r}; choose from {', '.join(BACKENDS)}")
    module, cls_name, package, extra = BACKENDS[name]
    if package is not None and extra is not None:
        require_extra(package, extra, name)
    cls = getattr(importlib.import_module(module), cls_name)
    return cls(**options)
