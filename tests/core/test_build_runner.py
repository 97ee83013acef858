"""The shared build runner: journal lag after a kill, chunk sizing, the fork pool, Ctrl-C, dead workers."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import assert_resumes_like_a_clean_build, default_sigint, run_trapped_build

from p2ptools.buildkit.memory import keep_freed_memory
from p2ptools.buildkit.runner import JOURNAL_NAME, _Chunker


def _ab(root: Path, count: int, workers: int = 2) -> list:
    """``count`` pairs of 16x16 PNGs in ``root/{A,B}/train``; returns the combine arguments."""
    rng = np.random.default_rng(2)
    for side in "AB":
        (root / side / "train").mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / side / "train" / f"{i:03d}.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    return ["--source-a", root / "A", "--source-b", root / "B", "--format", "png", "--workers", str(workers), "--no-progress"]


def test_pairs_on_disk_but_not_in_the_journal_are_made_again(tmp_path: Path):
    # a build that dies without cleaning up (os._exit) while making its 7th pair, with a journal
    # that never reaches the file: pairs 0-5 are on disk, unjournaled
    args = _ab(tmp_path, 12, workers=1)
    out = tmp_path / "out"
    died = run_trapped_build("combine", "exit", 6, args, out, env={"P2PTOOLS_TEST_JOURNAL_FLUSH_S": "1e9"})
    assert died.returncode == 3, died.stderr
    assert len(list((out / "train").glob("*.png"))) == 6
    assert (out / JOURNAL_NAME).read_text() == ""  # the journal lags behind the files
    # the files of the unjournaled pairs are trusted by nobody: corrupt one, the rerun replaces it
    (out / "train" / "003.png").write_bytes(b"half a file")
    assert assert_resumes_like_a_clean_build("combine", args, out, tmp_path / "clean") == 12


def _hand_out(jobs: list[int], workers: int, seconds_per_job: float) -> list[int]:
    """Chunk sizes a _Chunker gives when every job takes ``seconds_per_job`` on ``workers`` busy workers."""
    now = [0.0]
    chunker = _Chunker(jobs, workers, clock=lambda: now[0])
    sizes, seen = [], []
    while (chunk := chunker.take()) is not None:
        sizes.append(len(chunk))
        seen += chunk
        now[0] += len(chunk) * seconds_per_job / workers
        chunker.finish(len(chunk))
    assert seen == jobs  # every job once, in order
    return sizes


def test_chunks_follow_the_time_per_job_and_shrink_towards_the_end():
    fast = _hand_out(list(range(2000)), 2, 0.001)  # 1 ms jobs: large chunks (few messages)
    assert fast[0] == 1 and max(fast) == 64 and fast[-4:] == [1] * 4
    assert len(fast) < 2000 // 20
    slow = _hand_out(list(range(200)), 2, 0.5)  # 0.5 s jobs: one job per chunk, the bar moves per job
    assert slow == [1] * 200
    medium = _hand_out(list(range(400)), 2, 0.02)  # 20 ms: chunks of about 0.25 s
    assert max(medium) == 12
    assert _hand_out(list(range(5)), 4, 0.001) == [1] * 5


def test_keep_freed_memory_takes_effect_on_glibc():
    import platform

    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected


@pytest.mark.parametrize("how", ["sigint", "sigint-from-parent"])  # fork pool; forkserver + executor
def test_ctrl_c_stops_parallel_workers_after_their_chunk(tmp_path: Path, how: str):
    args = _ab(tmp_path, 60)
    out = tmp_path / "out"
    stopped = run_trapped_build("combine", how, 5, args, out)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip().splitlines() == [  # one line: no tracebacks from the workers
        f"interrupted: the finished pairs are kept in {out}; rerun the same command to resume"]
    assert 5 <= len(list((out / "train").glob("*.png"))) < 60
    assert not list(out.rglob(".tmp-*"))  # running chunks finished their writes
    assert_resumes_like_a_clean_build("combine", args, out, tmp_path / "clean")


def test_a_worker_that_dies_is_reported_in_one_line(tmp_path: Path):
    args = _ab(tmp_path, 40)
    out = tmp_path / "out"
    died = run_trapped_build("combine", "exit", 3, args, out)
    assert died.returncode == 1
    assert died.stderr.strip().splitlines() == [
        "error: a build worker process died (exit status 3); finished pairs are kept: rerun to resume, "
        "or use --workers 1 to see the problem in the main process"]
    assert not list(out.rglob(".tmp-*"))
    assert_resumes_like_a_clean_build("combine", args, out, tmp_path / "clean")


@pytest.mark.parametrize("debug", ["0", "1"])
def test_an_exception_in_a_worker_reaches_the_user(tmp_path: Path, debug: str):
    args = _ab(tmp_path, 20)
    failed = run_trapped_build("combine", "raise", 2, args, tmp_path / "out", env={"P2PTOOLS_DEBUG": debug})
    assert failed.returncode == 1
    if debug == "1":  # the worker's own traceback is chained to the one the user sees
        assert "in a worker process:" in failed.stderr and "in make_pair" in failed.stderr
        assert failed.stderr.strip().endswith("ZeroDivisionError: trap in make_pair")
    else:
        assert "ZeroDivisionError: trap in make_pair" in failed.stderr and len(failed.stderr.strip().splitlines()) <= 2


def _echo_big(chunk: list[bytes]) -> list[bytes]:
    return [b"r" * len(item) for item in chunk]


def test_fork_pool_moves_chunks_and_replies_larger_than_a_pipe(tmp_path: Path, monkeypatch):
    """Megabyte chunks and replies both ways: one chunk at a time per worker cannot deadlock."""
    import signal

    from p2ptools.buildkit import forkpool
    from p2ptools.buildkit.forkpool import run_forked

    monkeypatch.setattr(forkpool, "DRAIN_TIMEOUT_S", 2.0)  # a deadlock fails in seconds, not minutes

    chunks = [[b"c" * 700_000] * 3 for _ in range(6)]
    todo, got = list(chunks), []
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the pool deadlocked"))
    signal.alarm(60)
    try:
        run_forked(lambda: todo.pop() if todo else None, got.append, 2, _echo_big, lambda: None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert len(got) == 6 and all(reply == [b"r" * 700_000] * 3 for reply in got)


def test_forkserver_workers_ignore_ctrl_c_from_their_first_instruction():
    """A worker forked by the server ignores SIGINT before any initializer runs (a Ctrl-C while it
    still imports the builder's modules printed its traceback); the parent keeps its own handler."""
    code = """
import multiprocessing, signal
from concurrent.futures import ProcessPoolExecutor
from p2ptools.buildkit.runner import start_forkserver_ignoring_sigint
start_forkserver_ignoring_sigint()
with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
    print(pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=default_sigint)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
