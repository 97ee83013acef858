"""Issue 23.6: a swap killed at any step leaves --out in place, old or new and complete, and the next
run's recover_swap leaves a consistent folder; the same for the two-rename fallback, where only the
old copy may wait beside a missing --out until recover_swap puts it back."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
from pathlib import Path

import pytest

from p2ptools import outputs
from p2ptools.outputs import recover_swap, staging_path, swap_in

OLD = {"a.txt": b"old a", "sub/b.txt": b"old b", "sub/deeper/c.txt": b"old c"}
NEW = {"a.txt": b"new a", "sub/d.txt": b"new d"}

def _swap_killed_at(staging: Path, out: Path, kill_at: int, mode: str) -> int:
    """In a forked child: swap_in(staging, out) with every file system step counted (renames, the
    exchange, each removal inside rmtree), SIGKILLed just before step ``kill_at``. ``mode``:
    "exchange", or a fallback: "absent" (no renameat2) or "einval" (a file system that refuses the
    exchange). Returns the child's wait status."""
    pid = os.fork()
    if pid:
        return os.waitpid(pid, 0)[1]
    try:  # the child: never returns
        steps = [0]

        def counted(function):
            def step(*args, **kwargs):
                steps[0] += 1
                if steps[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return function(*args, **kwargs)

            return step

        def refuses(*args):
            ctypes.set_errno(errno.EINVAL)
            return -1

        if mode != "exchange":
            outputs._RENAMEAT2[0] = None if mode == "absent" else refuses
        for name in ("replace", "rename", "rmdir", "unlink"):
            setattr(os, name, counted(getattr(os, name)))
        if hasattr(outputs, "_exchange"):
            outputs._exchange = counted(outputs._exchange)
        outputs.swap_in(staging, out)
        os._exit(0 if steps[0] == kill_at - 1 else 3)  # 3: a step was not counted as expected
    except BaseException:
        os._exit(2)


def _tree(folder: Path) -> dict[str, bytes] | None:
    if not folder.is_dir():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _has_exchange(folder: Path) -> bool:
    """Whether renameat2(RENAME_EXCHANGE) works in ``folder`` (asked of the C library directly)."""
    (folder / "probe-a").mkdir()
    (folder / "probe-b").mkdir()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.renameat2(-100, bytes(folder / "probe-a"), -100, bytes(folder / "probe-b"), 2) == 0
    except (OSError, AttributeError):
        return False
    finally:
        (folder / "probe-a").rmdir()
        (folder / "probe-b").rmdir()


def _kill_at_every_step(tmp_path: Path, mode: str):
    """Yield ``(root, out, staging, killed)`` for a swap killed before step 1, 2, ... and finally one
    that ran to its end (``killed`` False), each in a fresh folder."""
    for kill_at in range(1, 100):
        root = tmp_path / f"kill{kill_at}"
        out, staging = root / "out", staging_path(root / "out")
        _write(out, OLD)
        _write(staging, NEW)
        status = _swap_killed_at(staging, out, kill_at, mode)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:  # ran to its end: every step was killed once
            yield root, out, staging, False
            return
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"swap_in failed (status {status})"
        yield root, out, staging, True
    raise AssertionError("swap_in never finished")


def _next_run(root: Path, out: Path, staging: Path) -> None:
    """What the next run does: recover_swap, then (where the replacement survived) the swap again."""
    recover_swap(out)
    assert _tree(out) in (OLD, NEW) and not os.path.lexists(root / ".out.p2ptools-old")
    if staging.exists():
        assert _tree(staging) == NEW
        swap_in(staging, out)
    assert sorted(os.listdir(root)) == ["out"]


def test_swap_killed_at_every_step_leaves_out_old_or_new(tmp_path):
    if not _has_exchange(tmp_path):
        pytest.skip(f"{tmp_path}: this file system (or kernel, or C library) has no renameat2(RENAME_EXCHANGE)")
    seen = []
    for root, out, staging, killed in _kill_at_every_step(tmp_path, "exchange"):
        state = _tree(out)
        assert state in (OLD, NEW), (root, state)  # in place at every instant, complete
        seen.append("new" if state == NEW else "old")
        if killed:
            _next_run(root, out, staging)
            assert _tree(out) in (OLD, NEW)
        else:
            assert state == NEW and sorted(os.listdir(root)) == ["out"]
    assert seen[0] == "old" and seen[-1] == "new" and len(seen) >= 5, seen  # the rmtree steps were killed too


@pytest.mark.parametrize("mode", ["absent", "einval"])
def test_the_two_rename_fallback_killed_at_every_step_is_recovered(tmp_path, mode):
    seen = []
    for root, out, staging, killed in _kill_at_every_step(tmp_path, mode):
        state = _tree(out)
        if state is None:  # between the two renames: the old copy waits beside it
            assert _tree(root / ".out.p2ptools-old") == OLD
            seen.append("absent")
        else:
            assert state in (OLD, NEW), (root, state)
            seen.append("new" if state == NEW else "old")
        if killed:
            _next_run(root, out, staging)
        else:
            assert state == NEW and sorted(os.listdir(root)) == ["out"]
    assert "absent" in seen and seen[-1] == "new", seen


def test_swap_into_an_absent_or_empty_output_and_over_a_symlink(tmp_path):
    staging = staging_path(tmp_path / "out")
    _write(staging, NEW)
    swap_in(staging, tmp_path / "out")  # absent
    assert _tree(tmp_path / "out") == NEW and sorted(os.listdir(tmp_path)) == ["out"]
    (tmp_path / "empty").mkdir()
    _write(staging_path(tmp_path / "empty"), NEW)
    swap_in(staging_path(tmp_path / "empty"), tmp_path / "empty")
    assert _tree(tmp_path / "empty") == NEW
    target = tmp_path / "target"
    _write(target, OLD)
    (tmp_path / "link").symlink_to(target)
    _write(staging_path(tmp_path / "link"), NEW)
    swap_in(staging_path(tmp_path / "link"), tmp_path / "link")
    assert _tree(tmp_path / "link") == NEW and not (tmp_path / "link").is_symlink()
    assert _tree(target) == OLD  # the link was set aside and removed, never what it points to
    assert not os.path.lexists(tmp_path / ".link.p2ptools-old")


def test_exchange_reports_other_failures(tmp_path):
    if not _has_exchange(tmp_path):
        pytest.skip(f"{tmp_path}: no renameat2(RENAME_EXCHANGE) here")
    (tmp_path / "b").mkdir()
    with pytest.raises(OSError) as info:
        outputs._exchange(tmp_path / "missing", tmp_path / "b")
    assert info.value.errno == errno.ENOENT and sorted(os.listdir(tmp_path)) == ["b"]
