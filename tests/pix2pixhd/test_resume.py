"""Exact resume of pix2pixHD: a run SIGKILLed after a mid-epoch checkpoint, resumed with
`p2ptools train --resume`, ends bit-identical to an uninterrupted run (label maps, instances,
local enhancer with --niter-fix-global, so the Adam restart at the epoch boundary is covered)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_label_dataset, pix2pix_resume_helpers  # noqa: E402
from p2ptools_pix2pixhd.options import Pix2PixHDOptions  # noqa: E402
from p2ptools_pix2pixhd.trainer import STALL_ENV, train  # noqa: E402

_helpers = pix2pix_resume_helpers()
assert_same_checkpoints, checkpoint_step, logged_step, wait_for = (
    _helpers.assert_same_checkpoints, _helpers.checkpoint_step, _helpers.logged_step, _helpers.wait_for)

P2PTOOLS = [sys.executable, "-m", "p2ptools"]
# 4 pairs / batch 2 = 2 steps per epoch; 3 epochs (the first with the global part fixed) = 6 steps
OPTIONS = {"netG": "local", "ngf": 4, "ndf": 4, "n_downsample_global": 1, "n_blocks_global": 1, "n_blocks_local": 1,
           "n_layers_D": 2, "label_nc": 5, "direction": "BtoA", "niter_fix_global": 1, "vgg_loss": False, "preprocess": "none",
           "epochs": 2, "epochs_decay": 1, "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1, "checkpoint_every": 3}
ARGS = ["--model", "pix2pixhd", "--netG", "local", "--ngf", "4", "--ndf", "4", "--n-downsample-global", "1", "--n-blocks-global", "1",
        "--n-blocks-local", "1", "--n-layers-D", "2", "--label-nc", "5", "--direction", "BtoA", "--niter-fix-global", "1",
        "--no-vgg-loss", "--preprocess", "none", "--epochs", "2", "--epochs-decay", "1", "--batch-size", "2", "--workers", "0",
        "--device", "cpu", "--log-every", "1", "--checkpoint-every", "3", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_label_dataset(tmp_path_factory.mktemp("hd-data"), train=4, val=2)


def test_sigkill_after_checkpoint_then_resume_is_bit_exact(data, tmp_path):
    clean = train(dataclasses.replace(Pix2PixHDOptions(**OPTIONS)), data, tmp_path / "clean", progress=False)
    run = tmp_path / "run"
    env = dict(os.environ, **{STALL_ENV: "4"})
    proc = subprocess.Popen([*P2PTOOLS, "train", "--data", str(data), "--out", str(run), *ARGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # checkpoint at step 3 (mid-epoch 2, after the Adam restart), step 4 done and logged, then killed
    wait_for(lambda: checkpoint_step(run) == 3 and logged_step(run) == 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run([*P2PTOOLS, "train", "--resume", str(run), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert checkpoint_step(run) == 6
    assert_same_checkpoints(clean, run)
    steps = [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "G_GAN" in r]
    assert steps == list(range(1, 7))
    assert (run / "samples" / "epoch_0003.png").is_file()
