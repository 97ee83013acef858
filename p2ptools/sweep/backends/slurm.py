"""The ``slurm`` backend: each cell a Slurm job submitted through submitit
(``pip install 'p2ptools[slurm]'``).

submitit is the engine: it writes the sbatch script, submits it, watches the job (``sacct``) and
runs :func:`p2ptools.sweep.cell.run_cell` on the node that Slurm picks. The sweep directory must be
on a file system that the nodes share, at the same path; every node needs p2ptools installed
(submitit starts the job with the driver's Python, ``sys.executable``).

- A job's resources: ``partition``, ``time`` (minutes, required: submitit requeues a job that
  reaches it), ``gpus_per_job`` (default: 1 when the spec trains on a GPU, else none),
  ``account``; one task with ``cpus_per_task`` = the spec's ``threads`` (1 when it leaves it at 0).
- Logs: submitit's folder is the cell's own, ``cells/<row>/seed<N>/slurm/<job id>_0_log.{out,err}``.
- A job that reaches its time limit or is preempted is requeued by submitit (the callable is
  :class:`submitit.helpers.Checkpointable`) and resumes the cell from its last checkpoint.
- A job that ends without finishing its cell (killed, its node lost, cancelled: the record is not
  ``done`` or ``failed``) is submitted again, ``max_retries`` times, then recorded as ``failed``
  (:mod:`p2ptools.sweep.backends.lost`). A cell whose own work failed is not retried: a rerun of
  the sweep retries it.
- ``executor="local"``: submitit's local executor runs every job at once as a process on this
  machine (for tests; real local runs use ``--backend local --jobs N``).
- Ctrl-C in the driver cancels the jobs (``scancel``: training saves a checkpoint and stops); a
  killed driver leaves its jobs running (cancel them with ``scancel`` before rerunning the sweep).
"""

from __future__ import annotations

import contextlib
import io
import os
import time as _time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from p2ptools.errors import ConfigError
from p2ptools.sweep.backends.local import gpu_count, trains_on_gpu
from p2ptools.sweep.backends.lost import cell_folder, record_lost
from p2ptools.sweep.store import BACKEND_ENV, THREADS_ENV, read_state, read_stored

import submitit

#: Submissions of a cell after its job ended without finishing it.
MAX_RETRIES = 3
#: Seconds between two looks at the jobs (submitit rate-limits its own ``sacct`` calls).
POLL_SECONDS = 1.0
#: The local executor's time limit when none is given (it always has one).
LOCAL_TIME_MINUTES = 7 * 24 * 60
EXECUTORS = ("slurm", "local")


class CellJob(submitit.helpers.Checkpointable):
    """The callable a cell's job runs: :func:`p2ptools.sweep.cell.run_cell` with the backend
    recorded as ``slurm`` and ``threads`` torch threads (when the spec leaves ``threads`` at 0).

    Checkpointable: at its time limit or on preemption submitit submits the same call again,
    which resumes the cell from its checkpoint on disk.
    """

    def __call__(self, sweep_dir: str, row: str, seed: int, threads: int) -> dict:
        os.environ[BACKEND_ENV] = "slurm"
        os.environ[THREADS_ENV] = str(threads)
        from p2ptools.sweep.cell import run_cell

        return run_cell(sweep_dir, row, seed)


class SlurmBackend:
    """Run cells as Slurm jobs through submitit (``executor="local"``: submitit's local executor).

    Args:
        partition: Slurm partition (None: the cluster's default).
        time: minutes per job (required for ``executor="slurm"``).
        gpus_per_job: GPUs per job (None: 1 when the spec trains on a GPU, else none).
        account: account to charge (None: the user's default).
        executor: ``slurm`` (sbatch) or ``local`` (processes on this machine).
        max_retries: submissions of a cell after its job ended without finishing it.

    Raises:
        ConfigError: an unknown executor, a missing or bad ``time``, a negative count, or no Slurm
            on this machine (no ``srun``) for ``executor="slurm"``.
    """

    name = "slurm"

    def __init__(self, partition: str | None = None, time: int | None = None, gpus_per_job: int | None = None,
                 account: str | None = None, executor: str = "slurm", max_retries: int = MAX_RETRIES) -> None:
        if executor not in EXECUTORS:
            raise ConfigError(f"--slurm-executor: invalid value {executor!r}; choose from {', '.join(EXECUTORS)}")
        for flag, value in (("--time", time), ("--gpus-per-job", gpus_per_job), ("max_retries", max_retries)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < (1 if flag == "--time" else 0)):
                raise ConfigError(f"{flag}: invalid value {value!r}; give a whole number >= {1 if flag == '--time' else 0}")
        if executor == "slurm":
            if time is None:
                raise ConfigError("--time: the slurm backend needs the minutes per cell's job (submitit requeues a job "
                                  "that reaches them; the cell resumes)")
            if submitit.SlurmExecutor.affinity() < 0:
                raise ConfigError("--backend slurm: no Slurm on this machine (srun is not on PATH); run the sweep where "
                                  "sbatch works, or use --slurm-executor local")
        self.partition, self.time, self.gpus_per_job, self.account = partition or None, time, gpus_per_job, account or None
        self.executor, self.max_retries = executor, max_retries

    def run_cells(self, sweep_dir: Path, cells: Sequence[tuple[str, int]],
                  on_outcome: Callable[[tuple[str, int], dict], None]) -> None:
        """Submit ``cells`` as jobs; ``on_outcome(cell, state)`` as each one ends (see
        :mod:`p2ptools.sweep.backends`).

        Raises:
            ConfigError: Slurm refused the first job (a bad partition or account...), before any
                cell started.
        """
        sweep_dir = Path(sweep_dir).resolve()
        stored = read_stored(sweep_dir)
        threads = int(stored.get("threads") or 1)
        gpus = self._gpus(stored)
        jobs: dict[Any, tuple[tuple[str, int], int]] = {}  # job -> (cell, submissions so far)
        try:
            for index, cell in enumerate(cells):
                job, refused = self._submit(sweep_dir, stored, cell, threads, gpus)
                if job is None and index == 0:  # nothing runs yet: the spec or the flags are wrong
                    raise ConfigError(f"--backend slurm: the job of {cell[0]} seed {cell[1]} was refused: {refused}")
                if job is None:
                    on_outcome(cell, record_lost(sweep_dir, cell, f"the cell's job was refused: {refused}", stored))
                else:
                    jobs[job] = (cell, 1)
            while jobs:
                _time.sleep(POLL_SECONDS)
                for job in [j for j in jobs if j.done()]:
                    cell, submitted = jobs.pop(job)
                    state = read_state(cell_folder(sweep_dir, cell, stored), *cell)
                    if state["status"] in ("done", "failed"):
                        on_outcome(cell, state)
                        continue
                    state_word = f"{job.state}; " if self.executor == "slurm" else ""  # the local executor's says FINISHED
                    lost = f"the cell's {self.executor} job {job.job_id} ended without finishing it ({state_word}see {job.paths.stderr})"
                    if submitted > self.max_retries:
                        on_outcome(cell, record_lost(sweep_dir, cell, f"{lost}, {submitted} time(s) (max_retries {self.max_retries})", stored))
                        continue
                    again, refused = self._submit(sweep_dir, stored, cell, threads, gpus)
                    if again is None:
                        on_outcome(cell, record_lost(sweep_dir, cell, f"{lost}; submitting it again was refused: {refused}", stored))
                    else:
                        jobs[again] = (cell, submitted + 1)
        except BaseException:
            for job in jobs:  # Ctrl-C: scancel (SIGTERM: training saves a checkpoint and stops)
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort: the error that stopped the driver is the one to show
                    pass
            raise

    def _gpus(self, stored: dict[str, Any]) -> int:
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        if not trains_on_gpu(stored):
            return 0
        return min(1, gpu_count()) if self.executor == "local" else 1

    def _executor(self, folder: Path, threads: int, gpus: int) -> Any:
        if self.executor == "local":
            executor = submitit.LocalExecutor(folder=folder / "slurm")
            executor.update_parameters(timeout_min=self.time or LOCAL_TIME_MINUTES, gpus_per_node=gpus)
            return executor
        executor = submitit.SlurmExecutor(folder=folder / "slurm")
        executor.update_parameters(time=self.time, partition=self.partition, account=self.account, cpus_per_task=threads,
                                   ntasks_per_node=1, nodes=1, gpus_per_node=gpus or None, job_name="p2ptools-sweep")
        return executor

    def _submit(self, sweep_dir: Path, stored: dict[str, Any], cell: tuple[str, int], threads: int,
                gpus: int) -> tuple[Any, str]:
        """The submitted job of ``cell`` and ``""``, or None and why Slurm refused it."""
        folder = cell_folder(sweep_dir, cell, stored)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal, which the error holds too
                return self._executor(folder, threads, gpus).submit(CellJob(), str(sweep_dir), cell[0], cell[1], threads), ""
        except (submitit.core.utils.FailedSubmissionError, OSError, RuntimeError) as exc:
            return None, _one_line(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__
