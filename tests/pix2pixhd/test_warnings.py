"""Issue 26 item 10: a normal pix2pixHD run and its resume print no torch warning (run with
``-W error``, so any warning fails the process), with the default --workers on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_label_dataset  # noqa: E402

ARGS = ["--model", "pix2pixhd", "--ngf", "4", "--ndf", "4", "--n-downsample-global", "2", "--n-blocks-global", "1",
        "--n-layers-D", "2", "--label-nc", "5", "--direction", "BtoA", "--no-vgg-loss", "--preprocess", "none",
        "--epochs", "2", "--epochs-decay", "1", "--batch-size", "1", "--device", "cpu", "--no-progress"]


def _p2ptools(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error", "-m", "p2ptools", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_a_run_and_its_resume_across_an_epoch_boundary_warn_nothing(tmp_path):
    data = make_label_dataset(tmp_path / "data", train=2, val=1)
    run = tmp_path / "run"
    first = _p2ptools("train", "--data", data, "--out", run, *ARGS, "--max-steps", "2")  # stops at the end of epoch 1
    assert first.returncode == 0 and "arning" not in first.stderr, first.stderr
    config = json.loads((run / "config.json").read_text())
    config["options"]["max_steps"] = 0  # the same run, now to its end
    (run / "config.json").write_text(json.dumps(config))
    resumed = _p2ptools("train", "--resume", run, "--no-progress")
    assert resumed.returncode == 0 and "arning" not in resumed.stderr, resumed.stderr
    epochs = [(r["epoch"], r["step"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_L1" in r]
    assert epochs == [(1, 2), (2, 4), (3, 6)]  # 3 epochs of 2 steps: the resume trained epochs 2 and 3
