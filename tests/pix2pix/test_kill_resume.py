"""Issue 23.4: a training run killed with SIGKILL can be resumed at once, though its DataLoader
workers (forked children) outlive it for seconds: they do not hold the run's lock."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS, make_dataset  # noqa: E402
from p2ptools_pix2pix.trainer import STALL_ENV  # noqa: E402

from p2ptools.locks import lock_path  # noqa: E402


def _children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_then_resume_within_100_ms_succeeds_while_the_workers_live_on(tmp_path, cli):
    data = make_dataset(tmp_path / "data", train=6, val=2)
    out = tmp_path / "run"
    args = list(TINY_ARGS)
    args[args.index("--workers") + 1] = "2"
    env = dict(os.environ, **{STALL_ENV: "2", "OMP_NUM_THREADS": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "p2ptools", "train", "--data", str(data), "--out", str(out), *args,
                             "--checkpoint-every", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "latest_state.json").is_file() or len(_children(proc.pid)) < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the trainer did not reach its first checkpoint"
            time.sleep(0.05)
        workers = _children(proc.pid)
        for pid in workers:  # frozen: they outlive their parent for as long as the resume takes
            os.kill(pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        killed = time.monotonic()
        assert workers and all(_alive(pid) for pid in workers), workers  # the orphans are alive
        assert time.monotonic() - killed < 0.1
        res = cli("train", "--resume", out)  # takes the lock at its start
        assert res.code == 0, res.stderr
        assert all(_alive(pid) for pid in workers), "a worker died during the resume: the test proves nothing"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert json.loads((out / "checkpoints" / "latest_state.json").read_text())["step"] > 1
    assert not lock_path(out).exists()
