"""Advisory locks on output folders, so that two p2ptools processes never write one output at once.

``with output_lock(path): ...`` takes an exclusive ``fcntl.flock`` on ``<parent>/.<name>.lock``
(beside the output, so that the lock survives the output folder being swapped for its replacement
and never needs the folder to exist). The holder writes its PID into the file; a second process is
refused at once with :class:`LockedError` naming that PID. The lock file is removed on release;
a process that locked a file which was removed meanwhile notices (the path no longer names the
file it holds) and tries again, so removal never lets two holders in. The kernel drops the lock
when its holder dies, whatever killed it.

Train, resume, import-checkpoint, make-dataset, translate and eval take it on their output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from p2ptools.errors import P2PError


class LockedError(P2PError):
    """The output is locked by another process (its PID in the message)."""


def lock_path(output: str | Path) -> Path:
    """The lock file of ``output``: ``<parent>/.<name>.lock``."""
    output = Path(os.path.abspath(output))
    return output.parent / f".{output.name}.lock"


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``output`` inside the block (see the module docstring).

    Raises:
        LockedError: another process holds it (``"<output>: in use by p2ptools PID 1234 ..."``).
    """
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"{output}: in use by another p2ptools process ({_holder(path)}, lock {path}); "
                              "wait for it to finish or stop it") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: again
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked: a waiter that opened it sees the inode change
        os.close(fd)


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
