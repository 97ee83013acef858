"""Choosing the weights of a pix2pixHD run: `translate --epoch N|latest|best` (as tests/pix2pix/test_epochs.py
does for pix2pix). The per-epoch file is written here with write_epoch_weights, from a run of one
epoch fewer (the same seed and data: the weights the longer run had after that epoch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from p2p_testutils import make_dataset
from safetensors.torch import load_file

from p2ptools.cli import main
from p2ptools.imageio import read_image
from p2ptools.plugin import LoadOptions, TrainRequest
from p2ptools.registry import load_run
from p2ptools.training.epoch_weights import write_epoch_weights


@pytest.fixture(scope="module")
def epoch_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 4-epoch run whose epoch-3 generator is kept (``epoch_3_G``), and its data."""
    from p2ptools_pix2pixhd.plugin import Pix2PixHDPlugin

    root = tmp_path_factory.mktemp("hd-epochs")
    data = make_dataset(root / "data", train=2, val=1)
    plugin = Pix2PixHDPlugin()
    runs = {}
    for epochs in (3, 4):
        options = dataclasses.replace(plugin.smoke_options(), epochs=epochs, epochs_decay=0, lr=2e-3)
        runs[epochs] = plugin.train(options, TrainRequest(data, root / f"run{epochs}", progress=False))
    write_epoch_weights(runs[4], 3, load_file(str(runs[3] / "checkpoints" / "latest_G.safetensors")))
    return runs[4], data


def cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def translate(capsys, run: Path, data: Path, out: Path, epoch: str) -> tuple[dict, np.ndarray]:
    code, _, err = cli(capsys, "translate", run, "--input", data / "val", "--output", out, "--epoch", epoch, "--aligned",
                       "--no-progress")
    assert code == 0, err
    return json.loads((out / "translate.json").read_text()), read_image(out / "000.png")


def test_translate_with_an_epoch_uses_that_generator(capsys, epoch_run, tmp_path):
    run, data = epoch_run
    info3, out3 = translate(capsys, run, data, tmp_path / "out3", "3")
    info_latest, out_latest = translate(capsys, run, data, tmp_path / "latest", "latest")
    assert (info3["epoch"], info3["epoch_requested"], info3["weights"]) == (3, "3", "epoch_3_G.safetensors")
    assert (info_latest["epoch"], info_latest["epoch_requested"], info_latest["weights"]) == (4, "latest", "latest_G.safetensors")
    assert not np.array_equal(out3, out_latest)
    # the same as the latest model with epoch_3_G loaded by hand
    model = load_run(run, LoadOptions(device="cpu"))
    model.net_g.load_state_dict(load_file(str(run / "checkpoints" / "epoch_3_G.safetensors")))
    assert np.array_equal(model.translate([read_image(data / "val" / "000.png")[:, :32]])[0], out3)


def test_an_epoch_without_weights_is_one_line(capsys, epoch_run, tmp_path):
    run, data = epoch_run
    code, _, err = cli(capsys, "translate", run, "--input", data / "val", "--output", tmp_path / "bad", "--epoch", "7", "--no-progress")
    assert code == 1 and "no weights of epoch 7; kept epochs: 3, 4" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_best_is_the_kept_epoch_of_lowest_validation_l1(capsys, epoch_run, tmp_path):
    run, data = epoch_run
    logged = {r["epoch"]: r["val_L1"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_L1" in r}
    best = min((3, 4), key=lambda e: (logged[e], e))  # only the kept epochs (3 and latest, 4) compete
    info, image = translate(capsys, run, data, tmp_path / "best", "best")
    assert (info["epoch"], info["epoch_requested"]) == (best, "best")
    assert np.array_equal(image, translate(capsys, run, data, tmp_path / "chosen", str(best))[1])
