"""Advisory output locks (p2ptools/locks.py): a second process is refused naming the holder's PID; a
dead holder's lock is free again; the lock file never lets two holders in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2ptools import locks
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
    script = tmp_path / "hold.py"  # a file, not -c: forkserver children import the target from __main__'s file
    script.write_text(HOLD_WITH_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(out), how], stdout=subprocess.PIPE, text=True)
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


# Takes the lock and forks a child that keeps its copy of the lock descriptor for argv[2] seconds, as
# a child forked just before its parent's SIGKILL does until it runs (the fork hook is bypassed here
# by hiding the descriptor from it); prints the child's PID and waits to be killed.
HOLD_WITH_SLOW_CHILD = """
import os, sys, time
import p2ptools.locks as locks
with locks.output_lock(sys.argv[1]):
    held = set(locks._HELD)
    locks._HELD.clear()
    child = os.fork()
    if child == 0:
        time.sleep(float(sys.argv[2]))
        for fd in held:
            os.close(fd)
        time.sleep(60)
        os._exit(0)
    locks._HELD.update(held)
    print(child, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("child_keeps_it", [0.5, 60])
def test_a_dead_holders_lock_still_held_by_its_child_is_waited_for_then_refused(tmp_path: Path, child_keeps_it: float):
    """A killed holder's forked child that has not yet closed its copy: the lock is tried again for
    DEAD_HOLDER_GRACE seconds (taken once the child lets go), then refused naming the dead holder."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_WITH_SLOW_CHILD, str(out), str(child_keeps_it)], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proc.stdout.readline())
        proc.kill()
        proc.wait(timeout=30)
        start = time.monotonic()
        if child_keeps_it < locks.DEAD_HOLDER_GRACE:
            with output_lock(out) as path:
                assert path.read_text().strip() == str(os.getpid())
        else:
            with pytest.raises(LockedError, match=rf"in use by another p2ptools process \(PID {proc.pid}, lock "):
                with output_lock(out):
                    pass
            assert time.monotonic() - start >= locks.DEAD_HOLDER_GRACE
        os.kill(child, 0)  # the child still lives: only its closed copy let the lock go
    finally:
        proc.kill()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_a_live_holder_is_refused_at_once(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(LockedError):
            with output_lock(out):
                pass
        assert time.monotonic() - start < 0.5  # no grace for a holder that lives
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_lock_descriptors_are_not_inherited_across_exec(tmp_path: Path):
    with output_lock(tmp_path / "x"):
        (fd,) = locks._HELD
        assert not os.get_inheritable(fd)
    assert not locks._HELD
