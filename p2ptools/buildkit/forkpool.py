"""A small pool of forked worker processes for the build runner, with no helper threads.

``concurrent.futures.ProcessPoolExecutor`` keeps a manager thread and a queue-feeder thread in the
parent; on a 2-core machine their wake-ups per chunk compete with the two workers (measured: the
parent used 10% of the workers' CPU time on ``combine``). Here the parent talks to each worker over
one pipe from its own thread: it sends a worker its next chunk of jobs when the worker answers the
previous one. One chunk at a time per worker means a worker never has a chunk waiting in its pipe
while it sends a reply, so neither side can block the other, however large chunks or replies get;
the round trip costs about 0.1 ms per chunk of ~0.25 s (the chunker's sizing).

Stopping: a worker ignores SIGINT (Ctrl-C reaches the whole process group); the parent stops
handing out chunks, waits for the chunks already running (a few tenths of a second, by the
chunker's sizing), then ends the workers; a second Ctrl-C kills them at once (their writes are
atomic, so nothing half-written is left either way). A worker that dies is reported with its exit
status.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from p2ptools.errors import P2PError

#: How long the parent waits for running chunks when it stops early, then for the workers to exit.
DRAIN_TIMEOUT_S = 60.0


class WorkerDied(P2PError):
    """A worker process ended without answering (killed, out of memory, a crash in native code)."""


class _RemoteError(Exception):
    """Carries an exception raised in a worker that could not be sent as itself."""


def _serve(conn: Connection, initializer: Callable[..., None], init_args: Sequence[Any], run: Callable[[Any], Any]) -> None:
    """Worker loop: answer each chunk with ``("ok", run(chunk))`` or ``("error", exception,
    traceback text)`` until the parent sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    initializer(*init_args)
    while True:
        try:
            chunk = conn.recv()
        except EOFError:  # the parent is gone
            return
        if chunk is None:
            return
        try:
            reply: tuple = ("ok", run(chunk))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            reply = ("error", exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        try:
            conn.send(reply)
        except Exception as exc:  # noqa: BLE001 - an unpicklable exception or result: say what it was
            conn.send(("error", _RemoteError(f"{type(exc).__name__}: {exc}"), reply[-1] if reply[0] == "error" else ""))


def run_forked(
    take: Callable[[], Any | None],
    done: Callable[[Any], None],
    workers: int,
    run: Callable[[Any], Any],
    initializer: Callable[..., None],
    init_args: Sequence[Any] = (),
) -> None:
    """Run ``run(chunk)`` in ``workers`` forked processes for every chunk ``take()`` hands out
    (until it returns None) and pass each reply to ``done`` in the parent, as replies arrive.

    An exception raised by ``run`` in a worker, or by ``done``, stops the pool and is raised here
    once the running chunks have finished; so is Ctrl-C. Raises :class:`WorkerDied` if a worker
    ends without answering.
    """
    ctx = multiprocessing.get_context("fork")
    conns: list[Connection] = []
    procs: list[multiprocessing.process.BaseProcess] = []
    worker_of: dict[Connection, multiprocessing.process.BaseProcess] = {}
    pending: dict[Connection, int] = {}

    def feed(conn: Connection) -> None:
        chunk = take()
        if chunk is not None:
            try:
                conn.send(chunk)
            except OSError:  # a broken pipe: the worker is gone
                raise _died(worker_of[conn]) from None
            pending[conn] += 1

    try:
        gc.freeze()  # a collection in a worker would touch (and so copy) every inherited object
        try:
            for _ in range(workers):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child_end, initializer, init_args, run), daemon=True)
                conns.append(parent_end)
                worker_of[parent_end], pending[parent_end] = proc, 0
                proc.start()
                procs.append(proc)
                child_end.close()
        finally:
            gc.unfreeze()
        for conn in conns:
            feed(conn)
        while any(pending.values()):
            for conn in wait([c for c in conns if pending[c]]):
                reply = _receive(conn, worker_of[conn])
                pending[conn] -= 1
                if reply[0] == "error":
                    _, exc, text = reply
                    raise exc from _RemoteError(f"in a worker process:\n{text}")
                done(reply[1])
                feed(conn)
    except BaseException:
        _stop(conns, procs, pending)
        raise
    _stop(conns, procs, pending)


def _receive(conn: Connection, proc: multiprocessing.process.BaseProcess) -> Any:
    try:
        return conn.recv()
    except (EOFError, OSError):
        raise _died(proc) from None


def _died(proc: multiprocessing.process.BaseProcess) -> WorkerDied:
    proc.join(timeout=5)
    code = proc.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    return WorkerDied(f"a build worker process died ({how}); finished pairs are kept: rerun to resume, "
                      "or use --workers 1 to see the problem in the main process")


def _stop(conns: list[Connection], procs: list, pending: dict[Connection, int]) -> None:
    """Let running chunks finish (their replies are dropped: a rerun redoes those pairs), then end
    every worker; force the ones that do not end, and all of them on a second Ctrl-C."""
    try:
        for conn in conns:
            while pending[conn] and conn.poll(DRAIN_TIMEOUT_S):
                try:
                    conn.recv()
                except (EOFError, OSError):
                    break
                pending[conn] -= 1
            try:
                conn.send(None)
            except OSError:  # the worker is gone already
                pass
        for proc in procs:
            proc.join(timeout=DRAIN_TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns:
            conn.close()
