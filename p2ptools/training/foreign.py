"""Importing foreign checkpoints into run directories: what every plugin's importer shares.

- :func:`read_state_dict`: a ``.pth`` state dict read with ``torch.load(weights_only=True)`` (no code
  is ever unpickled), ``module.`` prefixes removed, with one-line errors naming the file;
- :func:`state_dict_problems`: how a state dict differs from a network's (keys and shapes);
- :func:`check_import_target` / :func:`write_run`: the run directory written beside and renamed into
  place, never over a foreign folder;
- :func:`import_generator`: all of it for a generator file, given a plugin's parts (its builder, the
  architecture flags, a guess of a file's architecture, the completion of legitimate differences).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from p2ptools.errors import CheckpointError, ConfigError, OutputError
from p2ptools.options import check_options, to_dict
from p2ptools.outputs import claim, discard, refuse_foreign, staging_path, swap_in
from p2ptools.plugin import CONFIG_NAME

O = TypeVar("O")
State = dict[str, torch.Tensor]


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
    """Check that ``run_dir`` may be (re)written; True when an existing run is to be replaced.

    A folder is replaced only when it is a p2ptools run (its ownership record, see
    :mod:`p2ptools.outputs`) and holds nothing p2ptools did not write (the whole folder is replaced).
    """
    from p2ptools.training.checkpoint import RUN, refuse_foreign_run_files

    state = refuse_foreign(run_dir, RUN, "--out")
    if state != "ours":
        return False
    if not overwrite:
        raise ConfigError(f"{run_dir}: already holds a run; use --overwrite to replace it")
    refuse_foreign_run_files(run_dir, whole=True)
    return True


def write_run(run_dir: Path, files: Mapping[str, bytes], overwrite: bool) -> None:
    """Write ``files`` (relative path -> bytes) as the run directory ``run_dir``: into its staging
    folder beside it first, then swapped into place (replacing an existing run only with ``overwrite``)."""
    from p2ptools.imageio import write_bytes_atomic
    from p2ptools.training.checkpoint import RUN

    check_import_target(run_dir, overwrite)
    staging = staging_path(run_dir)
    discard(staging)
    try:
        for folder in {staging, *((staging / rel).parent for rel in files)}:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a full disk: one line naming the folder; the staging is removed below
                raise OutputError(folder, exc) from None
        claim(staging, RUN)
        for rel, data in files.items():
            write_bytes_atomic(staging / rel, data)
        swap_in(staging, run_dir)
    finally:
        discard(staging)


def import_generator(checkpoint: Path, options: O, run_dir: Path, overwrite: bool = False, *, plugin: str, version: str,
                     build: Callable[[O], nn.Module], flags: Callable[[O], str],
                     guess: Callable[[Mapping[str, torch.Tensor]], str | None],
                     complete: Callable[[State, nn.Module, O], State] | None = None) -> Path:
    """Turn a foreign generator file (a plain state dict) into a run directory that ``translate`` can use.

    The file is read with :func:`read_state_dict`, passed through ``complete(state, net, options)``
    (a plugin's reconciliation of legitimate differences, e.g. buffers older files lack), checked key
    by key and shape by shape against ``build(options)`` and for NaN/inf values, and written as
    ``config.json`` (plugin, ``version``, the options, the parameter count, the source file) plus
    ``checkpoints/latest_G.safetensors`` (:func:`write_run`).

    Args:
        checkpoint: the foreign generator file.
        options: the run's options (a plugin dataclass); the architecture fields must describe the file.
        run_dir: the run directory to create.
        overwrite: replace an existing run directory.
        plugin, version: the plugin's name and version, recorded in ``config.json``.
        build: the generator ``options`` describe.
        flags: the architecture options as command-line flags (named when the file does not fit).
        guess: what a state dict looks like, as flags (or None), appended as a hint when it does not fit.
        complete: the plugin's completion of the state dict (default: none).

    Returns:
        ``run_dir``.

    Raises:
        CheckpointError: an unreadable file, NaN or infinite values, or keys / shapes that differ
            from the architecture (one message listing them, with the guess of the file's).
        ConfigError: invalid options, or ``run_dir`` exists without ``overwrite``.
    """
    from p2ptools.training.checkpoint import CHECKPOINTS, G_FILE

    checkpoint, run_dir = Path(checkpoint), Path(run_dir)
    check_options(options)
    check_import_target(run_dir, overwrite)  # fail before the (slow) loading
    state = read_state_dict(checkpoint)
    net = build(options)
    expected = net.state_dict()
    completed = complete(state, net, options) if complete is not None else state
    problems = state_dict_problems(expected, completed)
    if problems:
        hint = f"; the file looks like {guessed}" if (guessed := guess(state)) else ""
        raise CheckpointError(checkpoint, f"does not match {flags(options)}: {problems}{hint}")
    bad = [k for k, v in completed.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(checkpoint, f"holds NaN or infinite values in {', '.join(bad[:3])}")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in completed.items()}, strict=True)
    weights = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    config: dict[str, Any] = {
        "plugin": plugin,
        "plugin_version": version,
        "options": to_dict(options),
        "data": None,
        "data_manifest_sha256": None,
        "generator_params": sum(p.numel() for p in net.parameters()),
        "discriminator_params": None,
        "imported_from": str(checkpoint),
    }
    write_run(run_dir, {
        f"{CHECKPOINTS}/{G_FILE}": safetensors_bytes(weights, metadata={"format": "pt", "imported_from": checkpoint.name}),
        CONFIG_NAME: (json.dumps(config, indent=1) + "\n").encode(),
    }, overwrite)
    return run_dir
