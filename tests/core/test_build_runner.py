"""The shared build runner: journal lag after a kill, chunk sizing, the fork pool, Ctrl-C, dead workers."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from p2p_testutils import run_p2ptools, run_trapped_build

from p2ptools.build.memory import keep_freed_memory
from p2ptools.build.runner import JOURNAL_NAME, _Chunker

# A build that dies like a SIGKILLed one (os._exit: no flush, no cleanup) while making pair 7,
# with a journal that never reaches the file before that: pairs 0-5 are on disk, unjournaled.
DIE_MID_BUILD = """
import os, sys
from pathlib import Path
import p2ptools.build.runner as runner
from p2ptools.build import BuildOptions
from p2ptools_datasets.combine import CombineBuilder, CombineOptions

runner.JOURNAL_FLUSH_S = 1e9
made = []
original = CombineBuilder.make_pair
def make_pair(self, job, build):
    if len(made) == 6:
        os._exit(137)
    made.append(job.name)
    return original(self, job, build)
CombineBuilder.make_pair = make_pair
root = Path(sys.argv[1])
builder = CombineBuilder(CombineOptions(source_a=root / "A", source_b=root / "B"))
builder.build([], root / "out", BuildOptions(workers=1, format="png"), progress=False)
"""


def test_pairs_on_disk_but_not_in_the_journal_are_made_again(tmp_path: Path):
    rng = np.random.default_rng(1)
    for side in "AB":
        (tmp_path / side / "train").mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(tmp_path / side / "train" / f"{i:02d}.png"), rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    script = tmp_path / "die.py"
    script.write_text(DIE_MID_BUILD)
    died = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert died.returncode == 137, died.stderr
    out = tmp_path / "out"
    assert len(list((out / "train").glob("*.png"))) == 6
    assert (out / JOURNAL_NAME).read_text() == ""  # the journal lags behind the files
    # the files of the unjournaled pairs are trusted by nobody: corrupt one, the rerun replaces it
    (out / "train" / "03.png").write_bytes(b"half a file")

    cmd = [sys.executable, "-m", "p2ptools", "make-dataset", "combine", "--source-a", str(tmp_path / "A"),
           "--source-b", str(tmp_path / "B"), "--format", "png", "--workers", "1"]
    resumed = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    reference = subprocess.run(cmd + ["--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    for path in sorted((tmp_path / "ref" / "train").iterdir()):
        assert (out / "train" / path.name).read_bytes() == path.read_bytes(), path.name
    assert json.loads((out / "manifest.json").read_text())["pairs"] == json.loads((tmp_path / "ref/manifest.json").read_text())["pairs"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


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


def _ab(root: Path, count: int) -> list[str]:
    rng = np.random.default_rng(2)
    for side in "AB":
        (root / side / "train").mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / side / "train" / f"{i:03d}.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    return ["--source-a", root / "A", "--source-b", root / "B", "--format", "png", "--workers", "2", "--no-progress"]


def _finished_cleanly_later(root: Path, args: list, out: Path) -> None:
    """Nothing half-made is left, and the same command completes the build like a clean one."""
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.rglob(".tmp-*")]
    again = run_p2ptools("make-dataset", "combine", *map(str, args), "--out", str(out))
    assert again.code == 0, again.stderr
    clean = run_p2ptools("make-dataset", "combine", *map(str, args), "--out", str(root / "clean"))
    assert clean.code == 0, clean.stderr
    assert json.loads((out / "manifest.json").read_text())["pairs"] == json.loads((root / "clean/manifest.json").read_text())["pairs"]


@pytest.mark.parametrize("how", ["sigint", "sigint-from-parent"])  # fork pool; forkserver + executor
def test_ctrl_c_stops_parallel_workers_after_their_chunk(tmp_path: Path, how: str):
    args = _ab(tmp_path, 60)
    out = tmp_path / "out"
    stopped = run_trapped_build("combine", how, 5, args, out)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip().splitlines() == [  # one line: no tracebacks from the workers
        f"interrupted: the finished pairs are kept in {out}; rerun the same command to resume"]
    assert 5 <= len(list((out / "train").glob("*.png"))) < 60
    _finished_cleanly_later(tmp_path, args, out)


def test_a_worker_that_dies_is_reported_in_one_line(tmp_path: Path):
    args = _ab(tmp_path, 40)
    out = tmp_path / "out"
    died = run_trapped_build("combine", "exit", 3, args, out)
    assert died.returncode == 1
    assert died.stderr.strip().splitlines() == [
        "error: a build worker process died (exit status 3); finished pairs are kept: rerun to resume, "
        "or use --workers 1 to see the problem in the main process"]
    _finished_cleanly_later(tmp_path, args, out)


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

    from p2ptools.build import forkpool
    from p2ptools.build.forkpool import run_forked

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
