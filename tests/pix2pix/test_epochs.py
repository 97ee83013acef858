"""Choosing the weights of a run: `translate` / `eval --runs` with --epoch N|latest|best."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_options  # noqa: E402
from p2ptools_pix2pix.trainer import train  # noqa: E402

from p2ptools.cli import main  # noqa: E402
from p2ptools.errors import ConfigError, InputFileError  # noqa: E402
from p2ptools.imageio import read_image  # noqa: E402
from p2ptools.plugin import LoadOptions  # noqa: E402
from p2ptools.registry import load_run  # noqa: E402
from p2ptools.training import epoch_weights as epochs  # noqa: E402


@pytest.fixture(scope="module")
def epoch_run(tiny_data, tmp_path_factory) -> Path:
    """4 epochs, generators of epochs 2 and 4 kept (4 is also latest)."""
    options = tiny_options(epochs=3, epochs_decay=1, save_epoch_freq=2, lr=2e-3)
    return train(options, tiny_data, tmp_path_factory.mktemp("epochs") / "run", progress=False)


def val_l1(run: Path) -> dict[int, float]:
    return {r["epoch"]: r["val_L1"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_L1" in r}


def cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_resolve_weights(epoch_run):
    scores = val_l1(epoch_run)
    assert sorted(scores) == [1, 2, 3, 4]
    assert epochs.resolve_weights(epoch_run, "latest") == (epoch_run / "checkpoints" / "latest_G.safetensors", 4)
    assert epochs.resolve_weights(epoch_run, "2") == (epoch_run / "checkpoints" / "epoch_2_G.safetensors", 2)
    best = min((2, 4), key=lambda e: (scores[e], e))  # only kept epochs compete
    path, epoch = epochs.resolve_weights(epoch_run, "best")
    assert epoch == best and path.name == f"epoch_{best}_G.safetensors"
    with pytest.raises(InputFileError, match=r"no weights of epoch 3; kept epochs: 2, 4"):
        epochs.resolve_weights(epoch_run, 3)
    with pytest.raises(ConfigError, match="--epoch: invalid value 'first'"):
        epochs.resolve_weights(epoch_run, "first")
    with pytest.raises(ConfigError, match="--epoch"):
        epochs.parse_epoch("0")


def test_best_prefers_the_lowest_logged_validation_l1(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for e in (1, 2, 3):
        (tmp_path / "checkpoints" / f"epoch_{e}_G.safetensors").write_bytes(b"x")
    lines = [{"step": 1, "epoch": 1, "G_L1": 0.1}, {"step": 2, "epoch": 1, "val_L1": 0.5}, {"step": 4, "epoch": 2, "val_L1": 0.2},
             {"step": 6, "epoch": 3, "val_L1": 0.3}, {"step": 8, "epoch": 4, "val_L1": 0.1}]  # epoch 4 not kept
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut')
    assert epochs.resolve_weights(tmp_path, "best")[1] == 2
    (tmp_path / "log.jsonl").unlink()
    with pytest.raises(InputFileError, match="no training log"):
        epochs.resolve_weights(tmp_path, "best")


def test_translate_with_an_epoch_uses_that_generator(capsys, epoch_run, tiny_data, tmp_path):
    outputs = {}
    for epoch in ("2", "latest"):
        out = tmp_path / f"out_{epoch}"
        code, _, err = cli(capsys, "translate", epoch_run, "--input", tiny_data / "val", "--output", out, "--epoch", epoch, "--aligned", "--no-progress")
        assert code == 0, err
        info = json.loads((out / "translate.json").read_text())
        assert (info["epoch"], info["epoch_requested"]) == ((2, "2") if epoch == "2" else (4, "latest"))
        outputs[epoch] = read_image(out / "000.png")
    assert not np.array_equal(outputs["2"], outputs["latest"])
    # the same as a model whose generator holds epoch_2_G by hand
    model = load_run(epoch_run, LoadOptions())
    model.netG.load_state_dict(load_file(str(epoch_run / "checkpoints" / "epoch_2_G.safetensors")))
    by_hand = model.translate([read_image(tiny_data / "val" / "000.png")[:, :32]])[0]
    assert np.array_equal(by_hand, outputs["2"])
    code, _, err = cli(capsys, "translate", epoch_run, "--input", tiny_data / "val", "--output", tmp_path / "bad", "--epoch", "3", "--no-progress")
    assert code == 1 and "no weights of epoch 3; kept epochs: 2, 4" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_eval_runs_translate_with_the_chosen_epoch(capsys, epoch_run, tiny_data, tmp_path):
    out = tmp_path / "report"
    code, _, err = cli(capsys, "eval", "--runs", epoch_run, "--data", tiny_data, "--split", "val", "--epoch", "best", "--out", out,
                       "--no-progress")
    assert code == 0, err
    (info_path,) = out.glob("*/results/translate.json")
    info = json.loads(info_path.read_text())
    assert info["epoch_requested"] == "best" and info["epoch"] == epochs.resolve_weights(epoch_run, "best")[1]


def test_a_plugin_without_epoch_weights_refuses_another_epoch(tiny_data, tmp_path):
    from p2ptools_pix2pix._template import ColorMapOptions, ColorMapPlugin

    from p2ptools.plugin import TrainRequest

    run = ColorMapPlugin().train(ColorMapOptions(), TrainRequest(data=tiny_data, run_dir=tmp_path / "run"))
    assert ColorMapPlugin().load(run, LoadOptions()).translate([np.zeros((4, 4, 3), np.uint8)])[0].shape == (4, 4, 3)
    with pytest.raises(ConfigError, match="--epoch 2: the colormap-template plugin keeps only its latest weights"):
        ColorMapPlugin().load(run, LoadOptions(epoch="2"))
