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
        assert all(f" {term} " in line for term in ("G_GAN", "G_L1", "D_fake", "images/s")), line
        assert re.search(r"\| [\d.]+/s, \d:\d\d:\d\d elapsed, (ETA \d:\d\d:\d\d|done)$", line), line
    ends = [line for line in lines if " done " in line and "val_L1" in line]
    assert [line.split("epoch ")[1][:3] for line in ends] == ["1/3", "2/3", "3/3"]  # one line per epoch end, with val_L1
    assert res.stdout.strip() == f"trained: {tmp_path / 'run'}"
