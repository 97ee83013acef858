"""The GAN plugin template on the shared loop (plugins/p2ptools_pix2pix/_loop_template.py): what a
new model writes is enough for a run that learns, stops on SIGINT and resumes bit-exactly, keeps
per-epoch weights and translates with --epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from p2p_testutils import make_dataset, sigint_at_step
from p2ptools_pix2pix import _loop_template as template

from p2ptools.errors import InputFileError
from p2ptools.pairs import iter_split, read_pair
from p2ptools.plugin import LoadOptions, TrainRequest


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def options(**changes) -> template.PixelGANOptions:
    base = {"hidden": 8, "ndf": 4, "epochs": 3, "epochs_decay": 1, "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1,
            "lr": 5e-3}
    return template.PixelGANOptions(**(base | changes))


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_the_template_learns_resumes_and_translates(tmp_path):
    data = make_dataset(tmp_path / "data", train=8, val=2, size=32)
    plugin = template.PixelGANPlugin()
    opts = options(save_epoch_freq=1)
    whole = plugin.train(opts, TrainRequest(data=data, run_dir=tmp_path / "whole", progress=False))
    vals = [r["val_L1"] for r in read_log(whole) if "val_L1" in r]
    assert len(vals) == 4 and vals[-1] < vals[0], vals
    assert {"G_GAN", "G_L1_weighted", "D", "images_per_s"} <= set(read_log(whole)[0])
    assert json.loads((whole / "config.json").read_text())["plugin"] == "pixelgan-template"

    stopped = tmp_path / "stopped"
    with sigint_at_step(template, "train_step", 7), pytest.raises(KeyboardInterrupt):  # saved at that step boundary
        plugin.train(opts, TrainRequest(data=data, run_dir=stopped, progress=False))
    plugin.train(opts, TrainRequest(data=data, run_dir=stopped, resume=True, progress=False))
    for name in ("latest_G.safetensors", "latest_D.safetensors", "latest_state.safetensors", "epoch_1_G.safetensors"):
        assert (whole / "checkpoints" / name).read_bytes() == (stopped / "checkpoints" / name).read_bytes(), name

    a, b = read_pair(next(iter(iter_split(data, "val"))))
    latest = plugin.load(whole, LoadOptions(device="cpu")).translate([a])[0]
    first = plugin.load(whole, LoadOptions(device="cpu", epoch="1"))
    assert latest.shape == a.shape and latest.dtype == np.uint8 and first.epoch == 1
    assert not np.array_equal(first.translate([a])[0], latest)
    assert np.abs(latest.astype(int) - b).mean() < np.abs(a.astype(int) - b).mean()  # closer to the target than the input
    with pytest.raises(InputFileError, match="expected a uint8"):
        first.translate([a.astype(np.float32)])
