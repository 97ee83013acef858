"""A cell whose process died without finishing its record (a killed Ray worker, a Slurm job that
ran out of retries): record it as ``failed`` with one line saying what happened.

Shared by the ``ray`` and ``slurm`` backends, where the engine (not a process of ours) reports the
death. The cell's own lock decides whether the record may be written: a cell that a live process
still holds (another driver's) is left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2ptools.sweep.store import cell_dir, now, read_state, read_stored, stored_row, write_state


def cell_folder(sweep_dir: str | Path, cell: tuple[str, int], stored: dict[str, Any] | None = None) -> Path:
    """The folder of ``cell`` (row label, seed) in ``sweep_dir``."""
    stored = read_stored(sweep_dir) if stored is None else stored
    return cell_dir(sweep_dir, stored_row(stored, cell[0])["slug"], cell[1])


def record_lost(sweep_dir: str | Path, cell: tuple[str, int], error: str, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a cell whose process ended without a result, ``failed`` with ``error`` (one
    line), written to its ``cell.json``; a record the cell finished itself (``done`` or
    ``failed``) is returned as it is.
    """
    from p2ptools.locks import LockedError, output_lock

    folder = cell_folder(sweep_dir, cell, stored)
    try:
        with output_lock(folder):  # refused while another live process runs the cell
            state = read_state(folder, *cell)
            if state["status"] in ("done", "failed"):
                return state
            state = {**state, "status": "failed", "error": error, "failed": now()}
            write_state(folder, state)
            return state
    except LockedError as exc:
        return {**read_state(folder, *cell), "status": "failed", "error": f"{error}; the cell is now held by another process ({exc})"}
