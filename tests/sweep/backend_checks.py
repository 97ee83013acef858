"""What the Ray and submitit backend tests share: a killer of one cell's process mid-training and
the comparison of a sweep with the local backend's reference sweep."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

from p2ptools.sweep.store import cell_dir, read_stored, stored_row

CELLS = [("L1", 0), ("L1", 1), ("L1+cGAN", 0), ("L1+cGAN", 1)]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def folder_of(sweep: Path, label: str, seed: int) -> Path:
    """The folder of the cell (``label``, ``seed``) of ``sweep``."""
    return cell_dir(sweep, stored_row(read_stored(sweep), label)["slug"], seed)


def checkpoints(folder: Path) -> dict[str, bytes]:
    """The files of a cell's ``run/checkpoints`` (name -> bytes)."""
    return {p.name: p.read_bytes() for p in sorted((folder / "run" / "checkpoints").iterdir())}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return sorted(csv.DictReader(fh), key=lambda r: (r["row"], r["seed"]))


def assert_same_results(sweep: Path, reference: Path, cells: list[tuple[str, int]] = CELLS) -> None:
    """The sweep's cells.csv and table rows are the reference's (for the rows of ``cells``), and
    every cell's checkpoints are the reference cell's, byte for byte."""
    labels = sorted({label for label, _ in cells})
    assert csv_rows(sweep / "cells.csv") == [r for r in csv_rows(reference / "cells.csv") if r["row"] in labels]
    for label in labels:
        row = (sweep / "table.md").read_text().split(f"| {label} |")[1].splitlines()[0]
        assert row == (reference / "table.md").read_text().split(f"| {label} |")[1].splitlines()[0]
    for label, seed in cells:
        assert checkpoints(folder_of(sweep, label, seed)) == checkpoints(folder_of(reference, label, seed)), (label, seed)


class MidTrainingKiller(threading.Thread):
    """Watches the sweep's cells and SIGKILLs the process of the first one caught in training after
    its epoch-1 checkpoint (step 2 of 4) and before its end, so that its rerun resumes.

    The process is stopped (SIGSTOP) first and its record read again, so the kill never lands on a
    process that already finished the cell (and might run another). ``killed`` is (cell, pid, the
    record at the kill) once done.
    """

    def __init__(self, sweep: Path, backend: str, timeout: float = 300) -> None:
        super().__init__(daemon=True, name="mid-training-killer")
        self.sweep, self.backend, self.deadline = sweep, backend, time.monotonic() + timeout
        self.killed: tuple[tuple[str, int], int, dict] | None = None
        self.stop = threading.Event()

    def catchable(self, cell: tuple[str, int]) -> dict:
        """The record of ``cell`` when its process is in training past its epoch-1 checkpoint, else {}."""
        try:
            folder = folder_of(self.sweep, *cell)
        except Exception:  # noqa: BLE001 - sweep.json not written yet
            return {}
        state = _json(folder / "cell.json")
        if state.get("status") != "running" or state.get("step") != "train" or state.get("backend") != self.backend:
            return {}
        if _json(folder / "run" / "checkpoints" / "latest_state.json").get("step") != 2:
            return {}
        return state

    def run(self) -> None:
        while self.killed is None and not self.stop.is_set() and time.monotonic() < self.deadline:
            for cell in CELLS:
                state = self.catchable(cell)
                if not state:
                    continue
                pid = state["pid"]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    again = self.catchable(cell)
                    if again.get("pid") == pid and again.get("started") == state.get("started"):
                        os.kill(pid, signal.SIGKILL)
                        self.killed = (cell, pid, again)
                        return
                    os.kill(pid, signal.SIGCONT)  # it moved on meanwhile: let it be
            time.sleep(0.005)


def sweep_with_a_kill(spec_path: Path, sweep: Path, backend: str, **options):
    """Run the sweep of ``spec_path`` through ``backend`` (its ``options``) while a
    :class:`MidTrainingKiller` watches it; ``(outcome, killer.killed)``."""
    from p2ptools.sweep.backends import get_backend
    from p2ptools.sweep.runner import run_sweep
    from p2ptools.sweep.spec import load_spec

    killer = MidTrainingKiller(sweep, backend)
    killer.start()
    try:
        outcome = run_sweep(load_spec(spec_path), sweep, get_backend(backend, **options), progress=False)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no cell was caught between its epoch-1 checkpoint and its end"
    return outcome, killer.killed
