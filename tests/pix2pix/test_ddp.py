"""DistributedDataParallel with 2 gloo processes on the CPU, started by torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_options  # noqa: E402

from p2ptools_pix2pix.trainer import train  # noqa: E402

# Instance norm and no dropout: then 2 ranks x batch 2 compute what one process does with batch 4
# (each rank takes every other sample of the same permutation; gradients are averaged).
CHANGES = {"norm": "instance", "dropout": False, "epochs": 1, "epochs_decay": 1}

SCRIPT = """
import os, sys, dataclasses
from pathlib import Path
import pytest
import torch
from safetensors.torch import save_file
sys.path[:0] = [{tests!r}, str(Path({tests!r}).parent)]  # conftest and p2p_testutils
from conftest import tiny_options
import p2ptools_pix2pix.trainer as trainer

built = []
original = trainer.build_networks
def capture(*args, **kwargs):
    nets = original(*args, **kwargs)
    built.extend(nets)
    return nets
trainer.build_networks = capture
torch.set_num_threads(1)
options = tiny_options(**{changes!r})
trainer.train(options, Path({data!r}), Path({run!r}), progress=False)
rank = int(os.environ["RANK"])
for name, net in zip("GD", built):
    save_file({{k: v.contiguous() for k, v in net.state_dict().items()}}, {out!r} + f"/rank{{rank}}_{{name}}.safetensors")
"""


def test_two_gloo_processes_train_in_sync(tiny_data, tmp_path):
    script = tmp_path / "ddp_train.py"
    run = tmp_path / "run"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), changes=dict(CHANGES, batch_size=2),
                                    data=str(tiny_data), run=str(run), out=str(tmp_path)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in "GD":
        r0 = load_file(str(tmp_path / f"rank0_{name}.safetensors"))
        r1 = load_file(str(tmp_path / f"rank1_{name}.safetensors"))
        for key in r0:  # gradients all-reduced: every rank holds the same weights, bit for bit
            assert torch.equal(r0[key], r1[key]), f"{name} {key} differs between ranks"
    # rank 0 alone wrote the run; 8 pairs / (2 ranks x 2) = 2 steps per epoch, 2 epochs
    state = json.loads((run / "checkpoints" / "latest_state.json").read_text())
    assert (state["step"], state["world_size"], len(state["rng"])) == (4, 2, 2)
    assert state["rng"][0] != state["rng"][1]  # each rank has its own dropout stream
    assert len([r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_L1" in r]) == 2
    # ... and what one process computes with the whole batch of 4
    single = train(tiny_options(**CHANGES, batch_size=4), tiny_data, tmp_path / "single", progress=False)
    reference = load_file(str(single / "checkpoints" / "latest_G.safetensors"))
    g0 = load_file(str(tmp_path / "rank0_G.safetensors"))
    diffs = torch.cat([(reference[k] - g0[k]).abs().flatten() for k in reference])
    # Float sums in another order make Adam's near-zero gradients (|g| ~ eps) step differently: a few
    # weights in ten thousand move by up to lr per step; anything else (other data, unaveraged or
    # unsynchronised gradients) moves nearly all of them.
    assert (diffs > 1e-5).float().mean().item() < 0.005
    assert diffs.max().item() <= 4 * 2e-4 * 1.5


def test_wgangp_and_plateau_under_ddp_stay_in_sync(tiny_data, tmp_path):
    """The gradient penalty's double backward runs through the plain D inside DDP's backward, and
    plateau steps on rank 0's validation L1 (broadcast): both ranks still hold the same weights."""
    script = tmp_path / "ddp_train.py"
    changes = dict(CHANGES, batch_size=2, gan_mode="wgangp", lr_policy="plateau", epochs=2, epochs_decay=0)
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), changes=changes, data=str(tiny_data),
                                    run=str(tmp_path / "run"), out=str(tmp_path)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in "GD":
        r0 = load_file(str(tmp_path / f"rank0_{name}.safetensors"))
        r1 = load_file(str(tmp_path / f"rank1_{name}.safetensors"))
        assert all(torch.equal(r0[k], r1[k]) for k in r0), name
    state = json.loads((tmp_path / "run" / "checkpoints" / "latest_state.json").read_text())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    v1, v2 = [r["val_L1"] for r in log if "val_L1" in r]
    best = v2 if v2 < v1 * (1 - 0.01) else v1  # ReduceLROnPlateau's rule (mode min, threshold 1% relative)
    for name in "GD":  # rank 0's schedulers stepped on its validation L1
        assert state["schedulers"][name]["best"] == pytest.approx(best, abs=1e-6)
    assert all(r["D_GP"] > 0 for r in log if "G_L1_weighted" in r)
