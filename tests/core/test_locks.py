"""Advisory output locks (p2ptools/locks.py): a second process is refused naming the holder's PID; a
dead holder's lock is free again; the lock file never lets two holders in."""

from __future__ import annotations

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
