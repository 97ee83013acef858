"""pix2pixHD under torchrun: 2 gloo processes on the CPU stay in sync (label maps, local enhancer,
--niter-fix-global, multi-scale D whose D-loss pass is DDP-wrapped and G-loss pass is not)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_label_dataset  # noqa: E402

OPTIONS = {"netG": "local", "ngf": 4, "ndf": 4, "n_downsample_global": 1, "n_blocks_global": 1, "n_blocks_local": 1, "n_layers_D": 2,
           "label_nc": 5, "direction": "BtoA", "niter_fix_global": 1, "vgg_loss": False, "preprocess": "none", "epochs": 2,
           "epochs_decay": 0, "batch_size": 1, "workers": 0, "device": "cpu", "log_every": 1}

SCRIPT = """
import os
from pathlib import Path
import torch
from safetensors.torch import save_file
import p2ptools_pix2pixhd.trainer as trainer
from p2ptools_pix2pixhd.options import Pix2PixHDOptions

built = {{}}
for name in ("generator", "discriminator"):
    original = getattr(trainer, "build_" + name)
    def capture(options, original=original, name=name):
        built[name] = original(options)
        return built[name]
    setattr(trainer, "build_" + name, capture)
torch.set_num_threads(1)
trainer.train(Pix2PixHDOptions(**{options!r}), Path({data!r}), Path({run!r}), progress=False)
rank = int(os.environ["RANK"])
for name, net in built.items():
    save_file({{k: v.contiguous() for k, v in net.state_dict().items()}}, {out!r} + f"/rank{{rank}}_{{name}}.safetensors")
"""


def test_two_gloo_processes_train_in_sync(tmp_path):
    data = make_label_dataset(tmp_path / "data", train=4, val=1)
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(options=OPTIONS, data=str(data), run=str(tmp_path / "run"), out=str(tmp_path)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("generator", "discriminator"):
        r0 = load_file(str(tmp_path / f"rank0_{name}.safetensors"))
        r1 = load_file(str(tmp_path / f"rank1_{name}.safetensors"))
        for key in r0:
            assert torch.equal(r0[key], r1[key]), f"{name} {key} differs between ranks"
    state = json.loads((tmp_path / "run" / "checkpoints" / "latest_state.json").read_text())
    assert (state["step"], state["world_size"]) == (4, 2)  # 4 pairs / 2 ranks = 2 steps per epoch
