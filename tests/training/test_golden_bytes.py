"""Golden bytes: the sha256 of a tiny CPU run's final checkpoint, recorded once and asserted.

The resume tests compare two runs of the same code, so a refactor of the training loop that moves a
seed or an RNG draw would pass them while changing every result. These four runs (pix2pix with its
default objective; ``--loss l1``; pix2pixHD ``global``; pix2pixHD ``local`` with
``--niter-fix-global``) pin what the loop computes: the generator's weights and the whole saved
state (optimiser moments, schedulers, every RNG stream, position).

CPU kernels differ between instruction sets (AVX2 / AVX-512) and torch versions, so the recorded
digests belong to the platform they were taken on (``golden_bytes.json``'s ``platform``); elsewhere
the test is skipped with the command that records them. Re-record only on purpose, with the reason
in the commit: ``P2PTOOLS_RECORD_GOLDEN=1 pytest tests/training/test_golden_bytes.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "pix2pixhd"))
from hd_testutils import make_label_dataset  # noqa: E402
from p2p_testutils import make_dataset  # noqa: E402

GOLDEN = Path(__file__).with_name("golden_bytes.json")
FILES = ("latest_G.safetensors", "latest_state.safetensors", "latest_state.json")

PIX2PIX = {"netG": "unet_32", "netD": "patch16", "ngf": 8, "ndf": 8, "load_size": 36, "crop_size": 32, "epochs": 2,
           "epochs_decay": 1, "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1}
HD = {"ngf": 8, "ndf": 8, "n_downsample_global": 2, "n_blocks_global": 1, "n_layers_D": 2, "num_D": 2, "vgg_loss": False,
      "preprocess": "none", "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1}
RUNS = {
    "pix2pix": ("pix2pix", {}),
    "pix2pix-l1": ("pix2pix", {"loss": "l1"}),
    "pix2pixhd-global": ("pix2pixhd", {"label_nc": 0, "instance": False, "epochs": 2, "epochs_decay": 1}),
    "pix2pixhd-local-fix-global": ("pix2pixhd", {"netG": "local", "ngf": 4, "n_downsample_global": 1, "n_blocks_local": 1,
                                                 "label_nc": 5, "direction": "BtoA", "niter_fix_global": 1, "epochs": 2,
                                                 "epochs_decay": 1}),
}


def platform() -> str:
    """What the digests depend on besides the code: torch's version and the CPU kernels it picks."""
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"


def train_tiny(name: str, root: Path) -> dict[str, str]:
    """Run ``RUNS[name]`` on one thread; the sha256 of each file of its final checkpoint."""
    plugin, changes = RUNS[name]
    if plugin == "pix2pix":
        from p2ptools_pix2pix.options import Pix2PixOptions
        from p2ptools_pix2pix.trainer import train

        data = make_dataset(root / "data", train=4, val=2, size=32)
        options = Pix2PixOptions(**(PIX2PIX | changes))
    else:
        from p2ptools_pix2pixhd.options import Pix2PixHDOptions
        from p2ptools_pix2pixhd.trainer import train

        if changes.get("label_nc"):
            data = make_label_dataset(root / "data", train=4, val=2, label_nc=changes["label_nc"])
        else:
            data = make_dataset(root / "data", train=4, val=2, size=32)
        options = Pix2PixHDOptions(**(HD | changes))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(options, data, root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    return {f: hashlib.sha256((run / "checkpoints" / f).read_bytes()).hexdigest() for f in FILES}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_final_checkpoint_bytes_are_the_recorded_ones(name, tmp_path):
    recorded = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {"platform": platform(), "runs": {}}
    if os.environ.get("P2PTOOLS_RECORD_GOLDEN") == "1":
        digests = train_tiny(name, tmp_path)
        if recorded["platform"] != platform():
            recorded = {"platform": platform(), "runs": {}}
        recorded["runs"][name] = digests
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return
    if recorded["platform"] != platform():
        pytest.skip(f"digests recorded on {recorded['platform']}, this is {platform()}: "
                    "record with P2PTOOLS_RECORD_GOLDEN=1 at a known-good commit")
    assert train_tiny(name, tmp_path) == recorded["runs"][name]
