"""``p2ptools train`` with stderr not a terminal (``> log 2>&1``): plain progress lines, never silence."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS  # noqa: E402

from p2p_testutils import run_p2ptools  # noqa: E402


def test_train_logs_plain_lines_when_stderr_is_not_a_terminal(tiny_data, tmp_path):
    args = [a for a in TINY_ARGS if a != "--no-progress"]
    args[args.index("--log-every") + 1] = "2"
    res = run_p2ptools("train", "--data", tiny_data, "--out", tmp_path / "run", *args, env={"OMP_NUM_THREADS": "1"}, timeout=120)
    assert res.code == 0, res.stderr
    lines = res.stderr.splitlines()
    logged = [line for line in lines if re.match(r"train pix2pix: \d+/12 \(\d+%\) epoch \d/3 D_real", line)]
    assert [int(line.split(":")[1].split("/")[0]) for line in logged] == [2, 4, 6, 8, 10, 12]  # 4 steps x 3 epochs
    for line in logged:
        assert all(f" {term} " in line for term in ("G_GAN", "G_L1_weighted", "D_fake", "images/s")), line
        assert re.search(r"\| [\d.]+/s, \d:\d\d:\d\d elapsed, (ETA \d:\d\d:\d\d|done)$", line), line
    ends = [line for line in lines if " done " in line and "val_L1" in line]
    assert [line.split("epoch ")[1][:3] for line in ends] == ["1/3", "2/3", "3/3"]  # one line per epoch end, with val_L1
    assert res.stdout.strip() == f"trained: {tmp_path / 'run'}"


def test_ctrl_c_on_a_terminal_leaves_the_message_below_the_bar(tiny_data, tmp_path):
    """On a terminal (rich's bar, 80 columns), the "interrupted: checkpoint saved" line is the last
    thing written: the bar is not redrawn below it."""
    import os
    import signal
    import subprocess
    import time

    from p2ptools_pix2pix.trainer import STALL_ENV

    args = [a for a in TINY_ARGS if a != "--no-progress"]
    run = tmp_path / "run"
    env = dict(os.environ, **{STALL_ENV: "2", "OMP_NUM_THREADS": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1",
                              "COLUMNS": "80", "LINES": "24", "NO_COLOR": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "p2ptools", "train", "--data", str(tiny_data), "--out", str(run), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / "log.jsonl").exists() or len((run / "log.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.05)
    time.sleep(0.3)  # a refresh or two of the bar while stalled
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)  # styles and cursor moves
    assert proc.returncode == 130, err
    assert "━" in err and "elapsed ETA" in err  # the rich bar was drawn
    after = err.split("interrupted: checkpoint saved at step 2")[1]
    assert "━" not in after and "train pix2pix" not in after, after
