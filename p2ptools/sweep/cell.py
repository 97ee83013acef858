"""One cell of a sweep (a row and a seed): train -> translate -> evaluate, resumable at any point.

:func:`run_cell` is the unit of work of every backend (``local``, ``ray``, ``slurm``): the same
function of (the spec stored in the sweep directory, row, seed), so a cell gives the same bytes
whoever runs it. Each step is skipped when it is complete and resumed when it is not:

- train: ``p2ptools train`` into ``cell/run`` through the model plugin, or ``train --resume`` of a
  run that a kill interrupted (the run's checkpoints and its lock make that exact and safe);
- translate: the run's evaluation split into ``cell/translated`` as ``p2ptools eval --runs`` does
  (:func:`p2ptools.eval.tables.translate_run`: a finished translation of the same run is reused);
- evaluate: ``p2ptools eval`` of that folder into ``cell/eval`` (built beside and swapped in whole).

The cell's state is recorded in ``cell.json`` (:mod:`p2ptools.sweep.store`). A kill (SIGKILL
included) at any moment leaves a ``running`` record whose process is gone; the next run of the cell
takes over from the last finished step. The cell's own lock (beside its folder) keeps two processes
from running one cell at once.

Run one cell in a fresh process: ``python -m p2ptools.sweep.cell SWEEP_DIR ROW SEED`` (exit code 0
done, 1 failed).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from p2ptools.errors import P2PError
from p2ptools.sweep.store import (BACKEND_ENV, LOG_NAME, THREADS_ENV, cell_dir, ground_truth_cell, host_name, now, read_state,
                                  read_stored, stored_row, write_state)  # fmt: skip

STEPS = ("train", "translate", "evaluate")


def error_line(exc: BaseException) -> str:
    """An exception as one line: a library error's message, else its type and message."""
    text = str(exc) if isinstance(exc, P2PError) else f"{type(exc).__name__}: {exc}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip()) or type(exc).__name__


def cell_threads(stored: dict[str, Any]) -> int | None:
    """The torch CPU threads of a cell: the spec's ``threads``, else the backend's share
    (``P2PTOOLS_SWEEP_THREADS``), else None (torch's default)."""
    if stored.get("threads"):
        return int(stored["threads"])
    given = os.environ.get(THREADS_ENV, "")
    return int(given) if given.isdigit() and int(given) > 0 else None


def run_cell(sweep_dir: str, row: str, seed: int) -> dict:
    """Train, translate and evaluate the cell (``row``, ``seed``) of the sweep in ``sweep_dir``.

    Steps already complete are skipped, an interrupted one is resumed. Returns the cell's state
    record (also written to ``cell.json``): ``{"row", "seed", "status": "done" | "failed", "error"
    (one line, when failed), "steps": {step: finished time}, "host", "pid", "backend", ...}``. A
    failure of the cell's own work never raises: it is the returned ``failed`` record. A cell
    that another process is running is not touched: its ``failed`` record says so (and is not
    written). KeyboardInterrupt (SIGINT/SIGTERM in training) records ``waiting`` and propagates.

    Raises:
        P2PError: ``sweep_dir`` holds no sweep, or no such row or seed (a caller's mistake).
    """
    from p2ptools.locks import LockedError, output_lock

    stored = read_stored(sweep_dir)
    entry = stored_row(stored, row)
    seed = int(seed)
    if seed not in stored["seeds"]:
        raise P2PError(f"no seed {seed} in this sweep (seeds: {', '.join(map(str, stored['seeds']))})")
    folder = cell_dir(sweep_dir, entry["slug"], seed)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(folder):
            return _run_locked(Path(sweep_dir), stored, entry, seed, folder)
    except LockedError as exc:
        return {**read_state(folder, row, seed), "status": "failed", "error": error_line(exc)}


def _run_locked(sweep_dir: Path, stored: dict[str, Any], entry: dict[str, Any], seed: int, folder: Path) -> dict:
    row = entry["label"]
    state = read_state(folder, row, seed)
    if state["status"] == "done" and (folder / "eval" / "report.json").is_file():
        return state  # nothing to do, nothing written
    steps = dict(state.get("steps") or {})
    state = {"row": row, "seed": seed, "status": "running", "host": host_name(), "pid": os.getpid(),
             "backend": os.environ.get(BACKEND_ENV, "local"), "started": now(), "step": None, "steps": steps}
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        state["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    write_state(folder, state)
    try:
        threads = cell_threads(stored)
        if threads:
            import torch

            torch.set_num_threads(threads)
        state["threads"] = threads
        for step in STEPS:
            if step in steps:
                continue
            state["step"] = step
            write_state(folder, state)
            {"train": _train, "translate": _translate, "evaluate": _evaluate}[step](sweep_dir, stored, entry, seed, folder)
            steps[step] = now()
        state.update(status="done", step=None, finished=now(), report=str(Path("cells") / entry["slug"] / f"seed{seed}" / "eval" / "report.json"))
    except KeyboardInterrupt:
        state.update(status="waiting", step=None, interrupted=now())
        write_state(folder, state)
        raise
    except Exception as exc:  # the cell's own work failed: recorded, never raised
        state.update(status="failed", error=error_line(exc), failed=now())
        _log_traceback(folder)
    write_state(folder, state)
    return state


def _log_traceback(folder: Path) -> None:
    try:
        with open(folder / LOG_NAME, "a", encoding="utf-8") as log:
            log.write(f"--- {now()} failed:\n{traceback.format_exc()}")
    except OSError:
        pass


def _train(sweep_dir: Path, stored: dict[str, Any], entry: dict[str, Any], seed: int, folder: Path) -> None:
    """Train the cell's run, or resume it (``p2ptools train`` / ``train --resume``, as the CLI does)."""
    from p2ptools import registry
    from p2ptools.locks import maybe_output_lock
    from p2ptools.options import from_dict
    from p2ptools.outputs import is_ours
    from p2ptools.plugin import CONFIG_NAME, TrainRequest, read_run_config
    from p2ptools.training.checkpoint import RUN

    cls = registry.load("models", stored["model"])
    run_dir = folder / "run"
    source = f"{sweep_dir / 'sweep.json'} row {entry['label']!r}"
    if (run_dir / CONFIG_NAME).is_file() and is_ours(run_dir, RUN):
        config = read_run_config(run_dir)  # resume with the run's own options (as train --resume)
        options = from_dict(cls.Options, config.get("options", {}), f"{run_dir / CONFIG_NAME}")
        request = TrainRequest(Path(config.get("data") or entry["data"]), run_dir, resume=True, progress=False)
    else:
        options = from_dict(cls.Options, {**entry["options"], "seed": seed}, source)
        request = TrainRequest(Path(entry["data"]), run_dir, progress=False)
    with maybe_output_lock(run_dir):
        cls().train(options, request)


def _translate(sweep_dir: Path, stored: dict[str, Any], entry: dict[str, Any], seed: int, folder: Path) -> None:
    """Translate the run's evaluation split, as ``p2ptools eval --runs`` does."""
    from p2ptools.eval.tables import translate_run

    values = stored["eval"]
    translate_run(folder / "run", folder / "translated", split=values.get("split"), device=values.get("device") or "auto",
                  progress=False)


def _evaluate(sweep_dir: Path, stored: dict[str, Any], entry: dict[str, Any], seed: int, folder: Path) -> None:
    """Evaluate the translation into ``cell/eval`` (``p2ptools eval``), unless a complete one is there."""
    from p2ptools.eval.api import EVALUATION, run_evaluation
    from p2ptools.outputs import is_ours
    from p2ptools.sweep.spec import eval_request, stored_eval

    out = folder / "eval"
    if (out / "report.json").is_file() and is_ours(out, EVALUATION):
        return  # swapped in whole before the kill that kept it from being recorded
    truth = ground_truth_cell(stored) == (entry["label"], seed)
    request = eval_request(stored_eval(stored["eval"]), folder / "translated", out, label=entry["label"], ground_truth_row=truth,
                           overwrite=True)
    run_evaluation(request)


def _die_with_parent() -> None:
    """In a local backend's subprocess: ask Linux for SIGTERM when the driver dies (training then
    saves a checkpoint and stops), so a killed sweep leaves no cell running on."""
    parent = os.environ.get("P2PTOOLS_SWEEP_PARENT", "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the driver died before the request: stop now
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """``python -m p2ptools.sweep.cell SWEEP_DIR ROW SEED``: run one cell; 0 done, 1 failed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not args[2].lstrip("-").isdigit():
        print("usage: python -m p2ptools.sweep.cell SWEEP_DIR ROW SEED", file=sys.stderr)
        return 2
    _die_with_parent()
    try:
        state = run_cell(args[0], args[1], int(args[2]))
    except P2PError as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if state["status"] != "done":
        print(f"error: {state['row']} seed {state['seed']}: {state.get('error')}", file=sys.stderr)
        return 1
    print(f"done: {state['row']} seed {state['seed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
