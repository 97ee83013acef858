"""The sweep directory: the stored spec, the cells' folders and their state records.

Layout of ``SWEEP_DIR``::

    .p2ptools.json                      ownership record (kind "sweep")
    spec.toml                           the spec file as given
    sweep.json                          the resolved spec (absolute paths) that every cell reads
    cells/<row>/seed<N>/cell.json       the cell's state: waiting | running | done | failed
    cells/<row>/seed<N>/cell.log        output of the cell's processes (subprocess backends)
    cells/<row>/seed<N>/run/            the training run (``p2ptools train``'s run directory)
    cells/<row>/seed<N>/translated/     its translation of the evaluation split
    cells/<row>/seed<N>/eval/           its evaluation (``report.json``, ``report.html``)
    table.{md,csv,tex,html}, cells.csv, plots/   the results (:mod:`p2ptools.sweep.results`)

A changed spec is refused unless ``overwrite``; then the cells whose training inputs (model, data,
options, seed) changed are removed and redone, cells whose evaluation settings changed keep their
run and are evaluated again, and the others are kept as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from p2ptools.errors import ConfigError
from p2ptools.imageio import read_json, write_text_atomic
from p2ptools.outputs import OutputKind, claim, refuse_foreign, refuse_overlap
from p2ptools.sweep.spec import SweepSpec, canonical

SPEC_NAME, STORED_NAME, STATE_NAME, LOG_NAME = "spec.toml", "sweep.json", "cell.json", "cell.log"
FORMAT = "p2ptools-sweep/1"
#: A sweep directory (``p2ptools.outputs``).
SWEEP = OutputKind("sweep", (STORED_NAME,), label="sweep directory")
STATUSES = ("waiting", "running", "done", "failed")
#: Environment of a cell: the backend that runs it (recorded in cell.json) and, when the spec leaves
#: ``threads`` at 0, the torch thread count the backend gives it.
BACKEND_ENV, THREADS_ENV = "P2PTOOLS_SWEEP_BACKEND", "P2PTOOLS_SWEEP_THREADS"


def cell_dir(sweep_dir: str | Path, slug: str, seed: int) -> Path:
    """The folder of the cell (row folder ``slug``, ``seed``)."""
    return Path(sweep_dir) / "cells" / slug / f"seed{seed}"


def read_stored(sweep_dir: str | Path) -> dict[str, Any]:
    """``SWEEP_DIR/sweep.json``: the resolved spec (see :meth:`SweepSpec.to_json`)."""
    path = Path(sweep_dir) / STORED_NAME
    stored = read_json(path, missing="no sweep.json: not a p2ptools sweep directory (start one with p2ptools sweep run)")
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a sweep description of this version (format {FORMAT})")
    return stored


def stored_row(stored: dict[str, Any], label: str) -> dict[str, Any]:
    """The row ``label`` of a stored spec (ConfigError naming the rows when absent)."""
    for row in stored["rows"]:
        if row["label"] == label:
            return row
    raise ConfigError(f"no row {label!r} in this sweep (rows: {', '.join(r['label'] for r in stored['rows'])})")


def stored_cells(stored: dict[str, Any]) -> list[tuple[str, int]]:
    """Every (row label, seed) of a stored spec, row by row."""
    return [(row["label"], seed) for row in stored["rows"] for seed in stored["seeds"]]


# ---------------------------------------------------------------------------------------------
# cell state records

def read_state(folder: Path, row: str, seed: int) -> dict[str, Any]:
    """The state record of a cell folder; ``waiting`` when it has none (or an unreadable one)."""
    try:
        state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
        if isinstance(state, dict) and state.get("status") in STATUSES:
            return state
    except (OSError, ValueError):
        pass
    return {"row": row, "seed": seed, "status": "waiting", "steps": {}}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Write a cell's state record atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / STATE_NAME, json.dumps(state, indent=1) + "\n")


def host_name() -> str:
    """This machine's name, as cell records give it."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process of this PID exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(state: dict[str, Any]) -> bool:
    """A ``running`` record whose process, on this machine, is gone (killed): the cell is resumable."""
    return (state.get("status") == "running" and state.get("host") == host_name() and isinstance(state.get("pid"), int)
            and not pid_alive(state["pid"]))


def now() -> str:
    """The time as records give it (UTC, ISO 8601, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cell_states(sweep_dir: str | Path, stored: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The state record of every cell of the sweep (row label, seed) -> record."""
    slugs = {row["label"]: row["slug"] for row in stored["rows"]}
    return {(label, seed): read_state(cell_dir(sweep_dir, slugs[label], seed), label, seed) for label, seed in stored_cells(stored)}


# ---------------------------------------------------------------------------------------------
# the sweep directory and a changed spec

def train_key(stored: dict[str, Any], row: dict[str, Any]) -> str:
    """What a row's runs are trained from (model, data, options): a changed key redoes its cells."""
    return canonical({"model": stored["model"], "data": row["data"], "options": row["options"]})


def eval_key(stored: dict[str, Any], label: str, seed: int) -> str:
    """What a cell is evaluated with: the ``[eval]`` values and whether it scores the ground truth."""
    return canonical({"eval": stored["eval"], "ground_truth": ground_truth_cell(stored) == (label, seed)})


def ground_truth_cell(stored: dict[str, Any]) -> tuple[str, int] | None:
    """The cell that also scores the real photos (the table's ground-truth row): the first row's
    first seed, when the spec asks for ``ground-truth-row``."""
    if not stored["eval"].get("ground-truth-row"):
        return None
    return stored["rows"][0]["label"], stored["seeds"][0]


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two stored specs, in words (``row L1: options``, ``seeds``, ...)."""
    diffs = []
    for key in ("model", "seeds", "threads", "eval", "title"):
        if canonical(old.get(key)) != canonical(new.get(key)):
            diffs.append(key)
    old_rows = {r["label"]: r for r in old["rows"]}
    new_rows = {r["label"]: r for r in new["rows"]}
    diffs += [f"row {label!r} removed" for label in old_rows if label not in new_rows]
    diffs += [f"row {label!r} added" for label in new_rows if label not in old_rows]
    for label in old_rows.keys() & new_rows.keys():
        for part in ("data", "options"):
            if canonical(old_rows[label][part]) != canonical(new_rows[label][part]):
                diffs.append(f"row {label!r} {part}")
    if [r["label"] for r in old["rows"]] != [r["label"] for r in new["rows"]] and not any("added" in d or "removed" in d for d in diffs):
        diffs.append("row order")
    return diffs


def prepare_sweep(sweep_dir: str | Path, spec: SweepSpec, *, overwrite: bool = False) -> list[str]:
    """Create ``sweep_dir`` for ``spec``, or check it against the spec stored there.

    A folder that is not ours is refused (p2ptools never writes into a folder it did not create); a
    different spec is refused unless ``overwrite``, which redoes only the cells it changes (module
    docstring). Returns what changed (empty for a new sweep or the same spec). Take the sweep's
    lock (:func:`p2ptools.locks.output_lock`) around this and the run.
    """
    sweep_dir = Path(sweep_dir)
    new = {"format": FORMAT, **spec.to_json()}
    refuse_overlap(sweep_dir, [row.data for row in spec.rows], "--out")  # a sweep never writes into its data
    state = refuse_foreign(sweep_dir, SWEEP, "--out")
    stored_path = sweep_dir / STORED_NAME
    changes: list[str] = []
    if state == "ours" and stored_path.is_file():
        old = read_stored(sweep_dir)
        if canonical(old) == canonical(new):
            return []
        changes = differences(old, new) or ["spec"]
        if not overwrite:
            raise ConfigError(f"--out {sweep_dir}: holds a sweep of another spec ({'; '.join(changes)} changed); use --overwrite to "
                              "redo the cells it changes (the others are kept) or choose another --out")
        _redo_changed(sweep_dir, old, new)
    else:
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from p2ptools.errors import OutputError

            raise OutputError(sweep_dir, exc) from None
        claim(sweep_dir, SWEEP)
    write_text_atomic(sweep_dir / SPEC_NAME, spec.text)
    write_text_atomic(stored_path, json.dumps(new, indent=1) + "\n")
    return changes


def _redo_changed(sweep_dir: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Remove what a new spec invalidates: cells of removed rows and seeds and of rows whose
    training changed, the evaluations (and, for another split, translations) of the rest."""
    from p2ptools.locks import output_lock

    new_rows = {r["label"]: r for r in new["rows"]}
    old_split, new_split = old["eval"].get("split"), new["eval"].get("split")
    for row in old["rows"]:
        successor = new_rows.get(row["label"])
        for seed in old["seeds"]:
            folder = cell_dir(sweep_dir, row["slug"], seed)
            if not folder.exists():
                continue
            with output_lock(folder):  # a cell still running elsewhere is refused, naming its PID
                gone = (successor is None or seed not in new["seeds"] or successor["slug"] != row["slug"]
                        or train_key(old, row) != train_key(new, successor))
                if gone:
                    shutil.rmtree(folder)
                    continue
                if eval_key(old, row["label"], seed) != eval_key(new, row["label"], seed):
                    shutil.rmtree(folder / "eval", ignore_errors=True)
                    if old_split != new_split:
                        shutil.rmtree(folder / "translated", ignore_errors=True)
                    state = read_state(folder, row["label"], seed)
                    steps = {k: v for k, v in state.get("steps", {}).items() if k == "train" or (k == "translate" and old_split == new_split)}
                    write_state(folder, {"row": row["label"], "seed": seed, "status": "waiting", "steps": steps})
        row_folder = sweep_dir / "cells" / row["slug"]
        with contextlib.suppress(OSError):
            if row_folder.is_dir() and not any(p for p in row_folder.iterdir() if not p.name.endswith(".lock")):
                shutil.rmtree(row_folder)
