"""Advisory locks on output folders, so that two p2ptools processes never write one output at once.

``with output_lock(path): ...`` takes an exclusive ``fcntl.flock`` on ``<parent>/.<name>.lock``
(beside the output, so that the lock survives the output folder being swapped for its replacement
and never needs the folder to exist). The holder writes its PID into the file; a second process is
refused at once with :class:`LockedError` naming that PID. The lock file is removed on release;
a process that locked a file which was removed meanwhile notices (the path no longer names the
file it holds) and tries again, so removal never lets two holders in. The kernel drops the lock
when its holder dies, whatever killed it.

Only the process that took a lock holds it: ``flock`` locks belong to the open file description, which
a forked child shares, so a DataLoader worker or a builder's forked worker would keep the lock of a
holder killed with SIGKILL until it noticed its parent was gone (seconds later), and an immediate
``--resume`` would be refused. Every forked child therefore closes its copies of the lock files at
once (:func:`os.register_at_fork`; closing a copy leaves the parent's lock in place, unlike
``LOCK_UN``), and the descriptors are close-on-exec, so ``spawn`` and ``forkserver`` children and
subprocesses never get them. A child forked just before its parent was killed may not have run yet
to close its copy: a lock whose recorded holder is dead is therefore tried again for up to
:data:`DEAD_HOLDER_GRACE` seconds before it is refused.

Train, resume, import-checkpoint, make-dataset, translate and eval take it on their output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from p2ptools.errors import OutputError, P2PError


class LockedError(P2PError):
    """The output is locked by another process (its PID in the message)."""


def lock_path(output: str | Path) -> Path:
    """The lock file of ``output``: ``<parent>/.<name>.lock``."""
    output = Path(os.path.abspath(output))
    return output.parent / f".{output.name}.lock"


#: The lock file descriptors this process has open, closed in every forked child (see the module docstring).
_HELD: set[int] = set()
#: Held across each fork and around opening/closing a lock file, so a fork never copies a lock
#: descriptor that ``_HELD`` does not list yet.
_GUARD = threading.Lock()


def _close_in_child() -> None:
    """After a fork, in the child: drop this copy of every lock descriptor (the parent keeps its lock)."""
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()
    _GUARD.release()


os.register_at_fork(before=_GUARD.acquire, after_in_parent=_GUARD.release, after_in_child=_close_in_child)


def _open_lock_file(path: Path) -> int:
    with _GUARD:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        _HELD.add(fd)
    return fd


def _close_lock_file(fd: int) -> None:
    with _GUARD:
        _HELD.discard(fd)
        os.close(fd)


#: Seconds a lock held although its recorded holder is dead is tried again (a forked child closing its copy).
DEAD_HOLDER_GRACE = 2.0


def _recorded_pid(path: Path) -> int | None:
    try:
        pid = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(pid) if pid.isdigit() else None


def _dead(pid: int | None) -> bool:
    """True when ``pid`` names no running process (gone, or a zombie waiting for its parent); False
    when that cannot be told (no PID recorded, an unreadable ``/proc``)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False


def _holder(path: Path) -> str:
    pid = _recorded_pid(path)
    return "another process" if pid is None else f"PID {pid}"


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``output`` inside the block (see the module docstring).

    Raises:
        LockedError: another process holds it (``"<output>: in use by p2ptools PID 1234 ..."``).
    """
    path = lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path.parent, exc) from None
    fd = _acquire(output, path)
    try:
        try:
            os.ftruncate(fd, 0)
            pid = f"{os.getpid()}\n".encode()
            if os.write(fd, pid) != len(pid):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:  # a full disk: the lock file is named (the PID is for messages only)
            raise OutputError(path, exc) from None
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked: a waiter that opened it sees the inode change
        _close_lock_file(fd)


def _acquire(output: str | Path, path: Path) -> int:
    """Open and lock ``path`` (the lock file of ``output``); its descriptor, or LockedError."""
    deadline = None
    while True:
        try:
            fd = _open_lock_file(path)
        except OSError as exc:
            raise OutputError(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _close_lock_file(fd)
            if _dead(_recorded_pid(path)):  # only a dead holder's forked child, about to close its copy
                deadline = deadline or time.monotonic() + DEAD_HOLDER_GRACE
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
            raise LockedError(f"{output}: in use by another p2ptools process ({_holder(path)}, lock {path}); "
                              "wait for it to finish or stop it") from None
        except BaseException:
            _close_lock_file(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        _close_lock_file(fd)  # the previous holder removed the file between our open and our lock: again


def rank_zero() -> bool:
    """True outside ``torchrun`` and on its rank 0 (the process that takes the locks)."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def maybe_output_lock(output: str | Path | None) -> Iterator[None]:
    """:func:`output_lock` on rank 0 when ``output`` is given; nothing otherwise."""
    if output is None or not rank_zero():
        yield
        return
    with output_lock(output):
        yield
