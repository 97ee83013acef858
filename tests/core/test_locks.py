"""Advisory output locks (p2ptools/locks.py): a second process is refused naming the holder's PID; a
dead holder's lock is free again; the lock file never lets two holders in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from p2ptools.locks import LockedError, lock_path, output_lock

HOLD = "import sys\nfrom p2ptools.locks import output_lock\nwith output_lock(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read()\n"


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert lock_path(out) == tmp_path / ".run.lock" and lock_path(out).read_text().strip() == str(proc.pid)
        with pytest.raises(LockedError, match=rf"{out}: in use by another p2ptools process \(PID {proc.pid}, lock "):
            with output_lock(out):
                pass
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with output_lock(out) as path:  # the kernel dropped the dead holder's lock
        assert path.read_text().strip().isdigit()
    assert not lock_path(out).exists()  # removed on release


def test_one_process_twice_is_refused_too(tmp_path: Path):
    with output_lock(tmp_path / "x"):
        with pytest.raises(LockedError):
            with output_lock(tmp_path / "x"):
                pass


# Takes the lock, starts a child that lives on (by ``os.fork`` or a multiprocessing start method),
# prints the child's PID and waits to be killed; the child never touches the lock itself.
HOLD_WITH_CHILD = """
import multiprocessing, os, sys, time
from p2ptools.locks import output_lock

def linger():
    time.sleep(60)

if __name__ == "__main__":
    how = sys.argv[2]
    with output_lock(sys.argv[1]):
        if how == "os.fork":
            child = os.fork()
            if child == 0:
                linger()
                os._exit(0)
        else:
            proc = multiprocessing.get_context(how).Process(target=linger, daemon=False)
            proc.start()
            child = proc.pid
        print(child, flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("how", ["os.fork", "fork", "forkserver"])
def test_a_child_outliving_a_killed_holder_does_not_hold_its_lock(tmp_path: Path, how: str):
    """Issue 23.4: SIGKILL of the holder frees the lock at once, though its forked children (DataLoader
    workers, builder workers) live on: flock locks belong to the open file description, which a fork shares."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_WITH_CHILD, str(out), how], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proc.stdout.readline())
        proc.kill()
        proc.wait(timeout=30)
        os.kill(child, 0)  # the orphan is still alive (it sleeps for a minute): it is what could hold the lock
        with output_lock(out) as path:
            assert path.read_text().strip() == str(os.getpid())
    finally:
        proc.kill()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_lock_descriptors_are_not_inherited_across_exec(tmp_path: Path):
    import p2ptools.locks as locks

    with output_lock(tmp_path / "x"):
        (fd,) = locks._HELD
        assert not os.get_inheritable(fd)
    assert not locks._HELD
