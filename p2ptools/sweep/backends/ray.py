"""The ``ray`` backend: each cell a Ray task on a Ray cluster (``pip install 'p2ptools[ray]'``).

Ray is the engine: it places the tasks on the cluster's nodes, as many at once as their CPUs and
GPUs allow, and runs a task again when its worker process or node dies (``max_retries``); this
module writes no scheduler of its own. A task calls :func:`p2ptools.sweep.cell.run_cell`, which
resumes the cell from its checkpoint, so a retried cell ends with the bytes of an uninterrupted one.

- The cluster: ``address`` (``--ray-address``: ``HOST:PORT`` of a running cluster, or ``auto``), or
  none: a local one started for the sweep and stopped after it (``ray.init()``). Every node needs
  p2ptools installed and the sweep directory at the same path (a shared file system).
- Resources of a task: ``num_cpus`` = the spec's ``threads`` (1 when the spec leaves it at 0), the
  torch thread count of the cell; ``num_gpus`` = 1 when the spec trains on a GPU and the cluster has
  GPUs (``num_gpus`` overrides it), so cells never share a GPU.
- A worker process runs one cell after another, as the local backend does in its own process (a
  cell sets its thread count and seeds itself, so its bytes do not depend on what ran before);
  Ray gives a GPU task a fresh process each time.
- The driver reports every cell through ``on_outcome``: a task that ran out of retries (its worker
  killed again and again), could not be placed, or raised is a ``failed`` record with one line,
  written to the cell's ``cell.json`` (:mod:`p2ptools.sweep.backends.lost`).
- Ctrl-C in the driver cancels the tasks (training saves a checkpoint and stops); a killed driver's
  tasks are ended by Ray. Either way a rerun of the sweep resumes them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from p2ptools.errors import ConfigError
from p2ptools.sweep.backends.local import trains_on_gpu
from p2ptools.sweep.backends.lost import record_lost
from p2ptools.sweep.store import BACKEND_ENV, THREADS_ENV, read_stored

#: Runs of a task after its worker dies (Ray's own default for tasks).
MAX_RETRIES = 3
#: Seconds the driver waits for cancelled cells to save their checkpoint after Ctrl-C.
CANCEL_WAIT_SECONDS = 60
#: Seconds to wait for the cluster's address to accept a connection.
PROBE_SECONDS = 10


def run_cell_task(sweep_dir: str, row: str, seed: int, threads: int) -> dict:
    """The Ray task of a cell: :func:`p2ptools.sweep.cell.run_cell` with the backend recorded as
    ``ray`` and ``threads`` torch threads (when the spec leaves ``threads`` at 0)."""
    os.environ[BACKEND_ENV] = "ray"
    os.environ[THREADS_ENV] = str(threads)
    from p2ptools.sweep.cell import run_cell

    return run_cell(sweep_dir, row, seed)


class RayBackend:
    """Run cells as Ray tasks on the cluster at ``address`` (None: a new local cluster).

    Args:
        address: ``HOST:PORT`` of the cluster's head (``ray start --head`` prints it) or ``auto``;
            None starts a local cluster for the sweep.
        num_gpus: GPUs per cell; None: 1 when the spec trains on a GPU and the cluster has one, else 0.
        max_retries: runs of a cell's task after its worker process dies.

    Raises:
        ConfigError: a negative ``num_gpus`` or ``max_retries``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: float | None = None, max_retries: int = MAX_RETRIES) -> None:
        if num_gpus is not None and not (isinstance(num_gpus, (int, float)) and num_gpus >= 0):
            raise ConfigError(f"--ray-num-gpus: invalid value {num_gpus!r}; give a number >= 0")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"max_retries: invalid value {max_retries!r}; give a whole number >= 0")
        self.address = address or None
        self.num_gpus = num_gpus
        self.max_retries = max_retries

    def run_cells(self, sweep_dir: Path, cells: Sequence[tuple[str, int]],
                  on_outcome: Callable[[tuple[str, int], dict], None]) -> None:
        """Run ``cells`` as Ray tasks; ``on_outcome(cell, state)`` as each one ends (see
        :mod:`p2ptools.sweep.backends`).

        Raises:
            ConfigError: no Ray cluster at ``address`` (one line, before any cell starts).
        """
        import ray

        sweep_dir = Path(sweep_dir).resolve()
        stored = read_stored(sweep_dir)
        threads = int(stored.get("threads") or 1)
        started = self._connect(ray)
        pending: dict[Any, tuple[str, int]] = {}
        try:
            gpus = self._gpus(ray, stored)
            if started and self.address is None:
                _refuse_infeasible(ray, threads, gpus)
            task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=self.max_retries,
                              retry_exceptions=False)(run_cell_task)
            pending = {task.remote(str(sweep_dir), row, seed, threads): (row, seed) for row, seed in cells}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    on_outcome(cell, _result(ray, ref, sweep_dir, stored, cell, self.max_retries))
        except BaseException:
            for ref in pending:  # Ctrl-C: the cells save a checkpoint and stop (KeyboardInterrupt in the task)
                ray.cancel(ref)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_SECONDS)
            raise
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster (or start a local one); whether this call did (and so must shut down)."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a cluster of our own: no telemetry unless asked for
            options["include_dashboard"] = False
        if self.address is not None:
            _probe(self.address)
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = f"--ray-address {self.address}" if self.address else "--backend ray"
            raise ConfigError(f"{where}: cannot start or reach a Ray cluster ({_first_line(exc)})") from None
        return True

    def _gpus(self, ray: Any, stored: dict[str, Any]) -> float:
        if self.num_gpus is not None:
            return float(self.num_gpus)
        return 1.0 if trains_on_gpu(stored) and ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _result(ray: Any, ref: Any, sweep_dir: Path, stored: dict[str, Any], cell: tuple[str, int], retries: int) -> dict:
    """The record a finished task returned, or, for a task that died, ran out of retries, was
    cancelled or raised, the cell's ``failed`` record (written to its ``cell.json``)."""
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError, WorkerCrashedError

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        from p2ptools.sweep.cell import error_line

        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        return record_lost(sweep_dir, cell, f"the cell's Ray task raised {error_line(cause)}", stored)
    except WorkerCrashedError:
        return record_lost(sweep_dir, cell, f"the cell's Ray worker died {1 + retries} time(s) (max_retries {retries} ran out)", stored)
    except TaskCancelledError:
        return record_lost(sweep_dir, cell, "the cell's Ray task was cancelled", stored)
    except RayError as exc:
        return record_lost(sweep_dir, cell, f"the cell's Ray task failed: {type(exc).__name__}: {_first_line(exc)}", stored)


def _refuse_infeasible(ray: Any, threads: int, gpus: float) -> None:
    """On the local cluster started for the sweep (no autoscaler adds nodes to it), a cell that
    asks for more CPUs or GPUs than the machine has would wait forever: refuse it in one line."""
    have = ray.cluster_resources()
    if have.get("CPU", 0) < threads:
        raise ConfigError(f"--backend ray: a cell asks for {threads} CPUs (the spec's threads) and this machine's Ray "
                          f"cluster has {have.get('CPU', 0):g}; lower threads or give --ray-address of a larger cluster")
    if have.get("GPU", 0) < gpus:
        raise ConfigError(f"--ray-num-gpus {gpus:g}: this machine's Ray cluster has {have.get('GPU', 0):g} GPU(s)")


def _probe(address: str) -> None:
    """Refuse at once an address where nothing listens (``ray.init`` would wait for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return  # "auto" (the address file of a local cluster): ray.init says what is wrong
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                          "start one with 'ray start --head' or leave --ray-address out for a local one") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
