"""Importing foreign checkpoints into run directories: what every plugin's importer shares.

- :func:`read_state_dict`: a ``.pth`` state dict read with ``torch.load(weights_only=True)`` (no code
  is ever unpickled), ``module.`` prefixes removed, with one-line errors naming the file;
- :func:`state_dict_problems`: how a state dict differs from a network's (keys and shapes);
- :func:`check_import_target` / :func:`write_run`: the run directory written beside and renamed into
  place, never over a foreign folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from p2ptools.errors import CheckpointError, ConfigError, OutputError
from p2ptools.plugin import CONFIG_NAME


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _listing(items: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _natural(key: str) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def state_dict_problems(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str | None:
    """One-line description of how ``got`` differs from ``expected`` (keys and shapes), or None.

    Lists the first few missing keys, unexpected keys and shape mismatches with their counts.
    """
    missing = [k for k in expected if k not in got]
    unexpected = sorted((k for k in got if k not in expected), key=_natural)
    shapes = [
        f"{k} file {_shape(got[k])} vs network {_shape(expected[k])}"
        for k in expected
        if k in got and _shape(got[k]) != _shape(expected[k])
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes, 3)}")
    return "; ".join(parts) or None


def read_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The state dict of a foreign ``.pth`` file (``module.`` prefix removed), read with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is missing, not a PyTorch file, holds
    anything but tensors (``weights_only`` refuses code), or is not a flat ``{name: tensor}`` dict.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(checkpoint, "no such file" if not checkpoint.exists() else "not a file")
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign or broken files
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(checkpoint, f"not a readable PyTorch weights file ({type(exc).__name__}: {detail})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(checkpoint, f"holds a {type(obj).__name__}, not a state dict of tensors")
    if not obj:
        raise CheckpointError(checkpoint, "holds an empty state dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(checkpoint, f"not a flat state dict of tensors (entries {', '.join(bad[:3])} are not tensors)")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def check_import_target(run_dir: Path, overwrite: bool) -> bool:
    """Check that ``run_dir`` may be (re)written; True when an existing run is to be replaced."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a folder; choose another --out")
    if not any(run_dir.iterdir()):
        return False
    if not (run_dir / CONFIG_NAME).is_file():
        raise ConfigError(f"{run_dir}: not empty and not a p2ptools run directory; refusing to write into it")
    if not overwrite:
        raise ConfigError(f"{run_dir}: already holds a run; use --overwrite to replace it")
    return True


def write_run(run_dir: Path, files: Mapping[str, bytes], overwrite: bool) -> None:
    """Write ``files`` (relative path -> bytes) as the run directory ``run_dir``: into a temporary
    sibling folder first, then renamed into place (replacing an existing run only with ``overwrite``)."""
    replace = check_import_target(run_dir, overwrite)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.tmp-", dir=run_dir.parent))
    except OSError as exc:
        raise OutputError(run_dir.parent, exc) from None
    try:
        for rel, data in files.items():
            target = tmp / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:  # a full disk: one line naming the file; the folder is removed below
                raise OutputError(target, exc) from None
        if replace:
            trash = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.old-", dir=run_dir.parent))
            run_dir.rename(trash / "run")
            tmp.rename(run_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            if run_dir.exists():
                run_dir.rmdir()  # empty, checked above
            tmp.rename(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
