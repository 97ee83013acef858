"""The sweep driver: a spec and a sweep directory in, every cell run by a backend, the results out.

:func:`run_sweep` takes the sweep's lock, stores (or checks) the spec, gives the cells that are not
done to the backend, shows their progress (one line per running cell plus the overall count; plain
lines off a terminal, :mod:`p2ptools.progress`), and writes the results when something changed. A
failed cell does not stop the others; the outcome lists the failed cells and a rerun retries only
them. The progress is read from the cells' own records and run logs, so it shows the same for
every backend.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2ptools.errors import P2PError
from p2ptools.sweep.backends import Backend
from p2ptools.sweep.cell import STEPS
from p2ptools.sweep.spec import SweepSpec
from p2ptools.sweep.store import cell_dir, cell_states, is_stale, prepare_sweep, read_stored, stored_row

POLL_SECONDS = 1.0


@dataclass
class SweepOutcome:
    """What a run of the sweep did: the cells it ran, those done and failed (with their records),
    what changed in the spec, and the results it wrote (None: no cell is done yet)."""

    ran: list[tuple[str, int]] = field(default_factory=list)
    done: list[tuple[str, int]] = field(default_factory=list)
    failed: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    table: Path | None = None


def run_sweep(spec: SweepSpec, sweep_dir: str | Path, backend: Backend, *, overwrite: bool = False,
              progress: bool = True) -> SweepOutcome:
    """Run every cell of ``spec`` that is not done into ``sweep_dir`` through ``backend``, then
    write the results (:func:`p2ptools.sweep.results.write_results`) when any cell changed.

    Raises:
        ConfigError: a folder that is not a sweep of ours, a different spec without ``overwrite``.
        LockedError: another driver runs this sweep.
    """
    from p2ptools.locks import output_lock
    from p2ptools.sweep.results import write_results

    sweep_dir = Path(sweep_dir)
    outcome = SweepOutcome()
    with output_lock(sweep_dir):
        outcome.changes = prepare_sweep(sweep_dir, spec, overwrite=overwrite)
        stored = read_stored(sweep_dir)
        states = cell_states(sweep_dir, stored)
        todo = [cell for cell, state in states.items() if state["status"] != "done"]
        if todo:
            with CellProgress(sweep_dir, stored, total=len(states), done=len(states) - len(todo), enabled=progress) as shown:
                def on_outcome(cell: tuple[str, int], state: dict[str, Any]) -> None:
                    outcome.ran.append(cell)
                    shown.finished(cell, state)

                backend.run_cells(sweep_dir, todo, on_outcome)
        states = cell_states(sweep_dir, stored)
        outcome.done = [cell for cell, state in states.items() if state["status"] == "done"]
        outcome.failed = {cell: state for cell, state in states.items() if state["status"] != "done"}
        if outcome.done:
            outcome.table = write_results(sweep_dir, stored, states)
    return outcome


def describe_state(state: dict[str, Any]) -> str:
    """A cell's state in a few words: ``done``, ``running (train) on host PID 12``, ``interrupted
    (resumable)``, ``failed: <error>``, ``waiting``."""
    status = state.get("status", "waiting")
    if status == "running":
        if is_stale(state):
            return "interrupted (resumable)"
        step = f" ({state['step']})" if state.get("step") else ""
        gpu = f" GPU {state['cuda_visible_devices']}" if state.get("cuda_visible_devices") else ""
        return f"running{step} on {state.get('host')}{gpu} PID {state.get('pid')} via {state.get('backend')} since {state.get('started')}"
    if status == "failed":
        return f"failed: {state.get('error')}"
    if status == "waiting" and state.get("steps"):
        return f"waiting ({', '.join(state['steps'])} done)"
    return status


def training_epoch(run_dir: Path) -> int | None:
    """The epoch of a run's latest logged step (``log.jsonl``'s last line), or None."""
    try:
        with open(run_dir / "log.jsonl", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
        epoch = json.loads(lines[-1]).get("epoch") if lines else None
    except (OSError, ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, int) else None


class CellProgress:
    """The progress display of a sweep: an overall task (cells done of all) and one task per
    running cell (its step and, while it trains, its epoch), refreshed from the cells'
    records every second by a background thread."""

    def __init__(self, sweep_dir: Path, stored: dict[str, Any], *, total: int, done: int, enabled: bool = True,
                 poll: float = POLL_SECONDS) -> None:
        from p2ptools.progress import StatsColumn, make_progress

        self.sweep_dir, self.stored, self.poll = sweep_dir, stored, poll
        self.bar = make_progress(enabled, StatsColumn())
        self.overall = self.bar.add_task("sweep", total=total, completed=done, stats="")
        self.tasks: dict[tuple[str, int], int] = {}
        self.ended: set[tuple[str, int]] = set()
        self.failed = 0
        self._totals: dict[str, int | None] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="sweep-progress", daemon=True)

    def __enter__(self) -> CellProgress:
        self.bar.__enter__()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.thread.join()
        self.bar.__exit__(*exc)

    def finished(self, cell: tuple[str, int], state: dict[str, Any]) -> None:
        """A cell ended (``on_outcome``): count it, drop its line."""
        with self.lock:
            self.failed += state.get("status") != "done"
            self.ended.add(cell)
            self._drop(cell)
            failed = f"{self.failed} failed" if self.failed else ""
            self.bar.update(self.overall, advance=1, stats=failed)

    def _drop(self, cell: tuple[str, int]) -> None:
        task = self.tasks.pop(cell, None)
        if task is not None and hasattr(self.bar, "remove_task"):
            self.bar.remove_task(task)

    def _epochs(self, row: dict[str, Any]) -> int | None:
        """A row's epochs (``epochs`` + ``epochs_decay``, its own or its model's defaults), or None
        for a model without those options."""
        if row["label"] not in self._totals:
            from p2ptools import registry
            from p2ptools.options import field_default

            try:
                fields = {f.name: field_default(f) for f in dataclasses.fields(registry.load("models", self.stored["model"]).Options)}
                values = {**fields, **row["options"]}
                self._totals[row["label"]] = int(values["epochs"]) + int(values.get("epochs_decay", 0))
            except (KeyError, TypeError, ValueError, P2PError):
                self._totals[row["label"]] = None
        return self._totals[row["label"]]

    def _watch(self) -> None:
        while not self.stop_event.wait(self.poll):
            self.refresh()

    def refresh(self) -> None:
        """Read the running cells' records and update their lines."""
        for (label, seed), state in cell_states(self.sweep_dir, self.stored).items():
            with self.lock:
                cell = (label, seed)
                if state.get("status") != "running" or is_stale(state) or cell in self.ended:
                    continue
                step = state.get("step") or "starting"
                position = len(state.get("steps") or {})
                if step == "train":  # the epoch, not the step: a plain line per epoch, not per logged step
                    row = stored_row(self.stored, label)
                    epoch = training_epoch(cell_dir(self.sweep_dir, row["slug"], seed) / "run")
                    total = self._epochs(row)
                    step = "train" if not epoch else f"train epoch {epoch}" + (f"/{total}" if total else "")
                stats = f"{step} on {state.get('host')}"
                if cell not in self.tasks:  # added blank, then given its status: plain output prints the first line too
                    self.tasks[cell] = self.bar.add_task(f"{label} seed {seed}", total=len(STEPS), completed=position, stats="")
                self.bar.update(self.tasks[cell], completed=position, stats=stats)
