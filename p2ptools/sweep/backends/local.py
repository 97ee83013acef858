"""The ``local`` backend: cells one after another in this process, or ``jobs`` at once as
subprocesses (``python -m p2ptools.sweep.cell``).

With GPUs (and a spec that does not train on the CPU) each subprocess sees one GPU of its own
through ``CUDA_VISIBLE_DEVICES``: cells never share a GPU, so ``jobs`` is at most the GPU count. On
the CPU the jobs split the cores: each cell gets ``cores // jobs`` torch threads unless the spec
fixes ``threads`` (then the cell's checkpoint bytes do not depend on ``jobs``). A subprocess's
output goes to its cell's ``cell.log``; a subprocess dies with the driver (SIGTERM from the
kernel, so training saves a checkpoint first).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from p2ptools.cpus import available_cpus
from p2ptools.errors import ConfigError
from p2ptools.sweep.store import (BACKEND_ENV, LOG_NAME, THREADS_ENV, cell_dir, is_stale, now, read_state, read_stored,
                                  stored_row, write_state)  # fmt: skip

#: Set in a cell subprocess: the driver's PID (the cell asks the kernel for SIGTERM when it dies).
PARENT_ENV = "P2PTOOLS_SWEEP_PARENT"
POLL_SECONDS = 0.2


def trains_on_gpu(stored: dict) -> bool:
    """Whether a row of the sweep may train on a GPU (its ``device`` is not ``cpu``)."""
    return any(str(row["options"].get("device", "auto")) != "cpu" for row in stored["rows"])


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalBackend:
    """Run cells on this machine: ``jobs`` at a time (1: in this process)."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise ConfigError(f"--jobs: invalid value {jobs!r}; give a whole number >= 1")
        self.jobs = jobs

    def run_cells(self, sweep_dir: Path, cells: Sequence[tuple[str, int]],
                  on_outcome: Callable[[tuple[str, int], dict], None]) -> None:
        """Run ``cells``; ``on_outcome(cell, state)`` as each one ends (see :mod:`p2ptools.sweep.backends`)."""
        sweep_dir = Path(sweep_dir)
        stored = read_stored(sweep_dir)
        gpus = gpu_count() if trains_on_gpu(stored) else 0
        jobs = min(self.jobs, max(1, len(cells)))
        if gpus and jobs > gpus:
            raise ConfigError(f"--jobs {self.jobs}: this machine has {gpus} GPU(s) and cells never share one; use --jobs {gpus} or fewer")
        threads = stored.get("threads") or max(1, available_cpus() // jobs)
        if jobs == 1:
            self._in_process(sweep_dir, cells, on_outcome, threads)
        else:
            self._subprocesses(sweep_dir, stored, cells, on_outcome, threads, list(range(gpus)) if gpus else [None] * jobs)

    @staticmethod
    def _in_process(sweep_dir: Path, cells: Sequence[tuple[str, int]], on_outcome: Callable[[tuple[str, int], dict], None],
                    threads: int) -> None:
        from p2ptools.sweep.cell import run_cell

        saved = {k: os.environ.get(k) for k in (BACKEND_ENV, THREADS_ENV)}
        os.environ[BACKEND_ENV], os.environ[THREADS_ENV] = "local", str(threads)
        try:
            for cell in cells:
                on_outcome(cell, run_cell(str(sweep_dir), cell[0], cell[1]))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    @staticmethod
    def _subprocesses(sweep_dir: Path, stored: dict, cells: Sequence[tuple[str, int]],
                      on_outcome: Callable[[tuple[str, int], dict], None], threads: int, slots: list[int | None]) -> None:
        waiting = list(cells)
        running: dict[subprocess.Popen, tuple[tuple[str, int], int | None, Path]] = {}
        free = list(slots)
        try:
            while waiting or running:
                while waiting and free:
                    cell, slot = waiting.pop(0), free.pop(0)
                    folder = cell_dir(sweep_dir, stored_row(stored, cell[0])["slug"], cell[1])
                    running[_start(sweep_dir, cell, slot, threads, folder)] = (cell, slot, folder)
                time.sleep(POLL_SECONDS)
                for proc in [p for p in running if p.poll() is not None]:
                    cell, slot, folder = running.pop(proc)
                    free.append(slot)
                    on_outcome(cell, _outcome(folder, cell, proc))
        except BaseException:
            for proc in running:  # Ctrl-C reached them too; any other stop: ask them to save and stop
                if proc.poll() is None:
                    proc.terminate()
            for proc in running:
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
            raise


def job_env(slot: int | None, threads: int) -> dict[str, str]:
    """The environment of a cell subprocess: the GPU ``slot`` alone visible (None: no GPU pinning),
    ``threads`` torch/OpenMP threads, the backend's name and the driver's PID."""
    env = {**os.environ, BACKEND_ENV: "local", THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads),
           PARENT_ENV: str(os.getpid())}
    if slot is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(slot)
    return env


def _start(sweep_dir: Path, cell: tuple[str, int], slot: int | None, threads: int, folder: Path) -> subprocess.Popen:
    env = job_env(slot, threads)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOG_NAME, "ab") as log:
        log.write(f"--- {now()} local job (threads {threads}{'' if slot is None else f', GPU {slot}'})\n".encode())
        log.flush()
        return subprocess.Popen([sys.executable, "-m", "p2ptools.sweep.cell", str(sweep_dir), cell[0], str(cell[1])], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _outcome(folder: Path, cell: tuple[str, int], proc: subprocess.Popen) -> dict:
    """A finished subprocess's cell record; a process that died without finishing its record (a
    crash, a kill) is recorded as failed with its exit code."""
    state, code = read_state(folder, *cell), proc.returncode
    other = state.get("pid") != proc.pid and not is_stale(state)
    if state["status"] == "running" and other:  # another process holds the cell
        return {**state, "status": "failed", "error": f"the cell is in use by PID {state.get('pid')} on {state.get('host')}"}
    if state["status"] == "running" or (state["status"] == "waiting" and code != 130):
        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
        state.update(status="failed", error=f"the cell's process {how} (see {folder / LOG_NAME})", failed=now())
        write_state(folder, state)
    return state
