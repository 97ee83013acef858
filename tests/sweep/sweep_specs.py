"""The test sweeps' specs: tiny pix2pix runs (unet_32 at width 4) on 32x32 pairs, on the CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

#: Train options of every test sweep: unet_32 at width 4, 2 epochs of 2 steps (4 pairs, batch 2),
#: a checkpoint at each epoch end (so that a kill in epoch 2 resumes from epoch 1's).
TRAIN = """
[train]
netG = "unet_32"
netD = "patch16"
ngf = 4
ndf = 4
load-size = 32
crop-size = 32
epochs = 1
epochs-decay = 1
batch-size = 2
workers = 0
device = "cpu"
sample-images = 0
checkpoint-minutes = 0
log-every = 1
"""
ROWS = """
[[rows]]
label = "L1"
loss = "l1"

[[rows]]
label = "L1+cGAN"
loss = "l1+cgan"
"""
EVAL = """
[eval]
color = true
samples = 2
"""


def spec_text(*, data: str = "data", seeds: str = "[0, 1]", rows: str = ROWS, train: str = TRAIN, eval_: str = EVAL,
              extra: str = "") -> str:
    """A test spec (threads fixed at 1, so that cells give the same bytes in any process)."""
    return f'title = "tiny"\ndata = "{data}"\nseeds = {seeds}\nthreads = 1\n{extra}\n{train}\n{rows}\n{eval_}'



def write_spec(folder: Path, data: Path, text: str | None = None, name: str = "spec.toml") -> Path:
    """``folder/name`` holding ``text`` (default :func:`spec_text`) with ``data`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "data").exists():
        shutil.copytree(data, folder / "data")
    path = folder / name
    path.write_text(spec_text() if text is None else text, encoding="utf-8")
    return path
