"""Per-epoch weights of a run (``--save-epoch-freq``) and choosing weights by ``--epoch``.

Files: ``RUN_DIR/checkpoints/epoch_<N>_<net>.safetensors`` (weights only), written by the
trainer's background writer beside the full checkpoint (whose swaps carry them over, see
:mod:`p2ptools.training.checkpoint`). ``--epoch`` is ``latest``, ``best`` (lowest validation L1 in
``log.jsonl`` among the kept epochs) or an epoch number.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.torchstate import save_file
from p2ptools.training.checkpoint import CHECKPOINTS, STATE_JSON

EPOCH_PATTERN = re.compile(r"epoch_(\d+)_([A-Za-z0-9]+)\.safetensors")


def epoch_weights_path(run_dir: Path, epoch: int, name: str = "G") -> Path:
    """``RUN_DIR/checkpoints/epoch_<epoch>_<name>.safetensors``."""
    return Path(run_dir) / CHECKPOINTS / f"epoch_{int(epoch)}_{name}.safetensors"


def write_epoch_weights(run_dir: Path, epoch: int, tensors: dict[str, torch.Tensor], name: str = "G") -> Path:
    """Write one network's weights of ``epoch`` (weights only, no optimizer state) atomically.

    Run it on the same :class:`~p2ptools.training.saving.BackgroundWriter` as the checkpoints: a
    checkpoint swap carries these files over to the new ``checkpoints/`` folder.
    """
    path = epoch_weights_path(run_dir, epoch, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    save_file(tensors, str(partial), metadata={"epoch": str(int(epoch))})
    os.replace(partial, path)
    return path


def epoch_weights(run_dir: Path, name: str = "G") -> dict[int, Path]:
    """The per-epoch weight files of network ``name`` in a run, by epoch (ascending)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = {}
    for path in folder.glob(f"epoch_*_{name}.safetensors") if folder.is_dir() else ():
        m = EPOCH_PATTERN.fullmatch(path.name)
        if m and m.group(2) == name:
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def drop_epoch_weights_after(run_dir: Path, epoch: int) -> None:
    """Remove per-epoch files of epochs after ``epoch`` (a resumed run writes them again)."""
    folder = Path(run_dir) / CHECKPOINTS
    for path in folder.glob("epoch_*.safetensors") if folder.is_dir() else ():
        m = EPOCH_PATTERN.fullmatch(path.name)
        if m and int(m.group(1)) > epoch:
            path.unlink()


def parse_epoch(text: str | int) -> str | int:
    """``--epoch`` value: ``"latest"``, ``"best"`` or an epoch number >= 1 (as int); else ConfigError."""
    value = str(text).strip().lower()
    if value in ("latest", "best"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ConfigError(f"--epoch: invalid value {text!r}; choose latest, best or an epoch number (1, 2, ...)")


def best_epoch(run_dir: Path, candidates: set[int]) -> int:
    """The epoch of ``candidates`` with the lowest ``val_L1`` in ``log.jsonl`` (the first on ties)."""
    log = Path(run_dir) / "log.jsonl"
    scores: dict[int, float] = {}
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        raise InputFileError(log, "no training log: --epoch best needs the validation L1 of each epoch") from None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and "val_L1" in record and "epoch" in record:
            scores[int(record["epoch"])] = float(record["val_L1"])
    scored = sorted((scores[e], e) for e in candidates if e in scores)
    if not scored:
        kept = ", ".join(map(str, sorted(candidates))) or "none"
        raise InputFileError(log, f"no validation L1 logged for an epoch whose weights were kept (kept: {kept}); "
                                  "train with --save-epoch-freq K to keep epochs")
    return scored[0][1]


def resolve_weights(run_dir: Path, epoch: str | int = "latest", name: str = "G") -> tuple[Path, int | None]:
    """The weights file of network ``name`` for ``--epoch`` and the epoch it holds (None if unknown).

    - ``latest``: ``checkpoints/latest_<name>.safetensors``;
    - ``N``: ``checkpoints/epoch_<N>_<name>.safetensors`` (written by ``--save-epoch-freq``), else
      latest if its checkpoint was taken at the end of epoch N; an InputFileError lists the kept epochs;
    - ``best``: the kept epoch (per-epoch files, and latest when taken at an epoch end) with the lowest
      validation L1 in ``log.jsonl``.
    """
    run_dir = Path(run_dir)
    spec = parse_epoch(epoch)
    latest = run_dir / CHECKPOINTS / f"latest_{name}.safetensors"
    latest_epoch = None
    try:
        state = json.loads((run_dir / CHECKPOINTS / STATE_JSON).read_text(encoding="utf-8"))
        if state.get("batches_done") == 0:
            latest_epoch = int(state["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if spec == "latest":
        return latest, latest_epoch
    kept = epoch_weights(run_dir, name)
    candidates = set(kept) | ({latest_epoch} if latest_epoch and latest.is_file() else set())
    if spec == "best":
        spec = best_epoch(run_dir, candidates)
    if spec in kept:
        return kept[spec], spec
    if spec == latest_epoch and latest.is_file():
        return latest, spec
    listing = ", ".join(map(str, sorted(candidates))) or "none (train with --save-epoch-freq K)"
    raise InputFileError(run_dir / CHECKPOINTS, f"no weights of epoch {spec}; kept epochs: {listing}")
