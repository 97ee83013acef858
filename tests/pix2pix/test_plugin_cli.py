"""`p2ptools train --model pix2pix`: options on the command line, run-directory rules, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS, make_dataset  # noqa: E402

from p2ptools import registry  # noqa: E402
from p2ptools.cli import main  # noqa: E402
from p2ptools.imageio import encode_image  # noqa: E402
from p2ptools_pix2pix import __version__  # noqa: E402
from p2ptools_pix2pix.options import Pix2PixOptions  # noqa: E402
from p2ptools_pix2pix.plugin import Pix2PixPlugin  # noqa: E402


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_registered_plugin_and_version():
    assert registry.load("models", "pix2pix") is Pix2PixPlugin
    assert Pix2PixPlugin.version == __version__ == "0.1.0" and Pix2PixPlugin.Options is Pix2PixOptions
    info = registry.info("models", "pix2pix")
    assert info.version == "0.1.0" and info.summary.startswith("pix2pix")


def test_help_lists_the_model_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # no wrapping inside help texts
    code, out, _ = cli(capsys, "train", "--model", "pix2pix", "--help")
    assert code == 0
    for flag in ("--netG", "--netD", "--lambda-l1", "--gan-mode", "--loss", "--norm", "--direction", "--preprocess",
                 "--epochs-decay", "--batch-size", "--precision", "--compile", "--checkpoint-every", "--seed",
                 "--resize-backend", "--log", "--lr-policy", "--gan-mode", "--init-type", "--save-epoch-freq", "--checkpoint-minutes"):
        assert flag in out, flag
    assert "[default: l1+cgan]" in out and "[default: unet_256]" in out


def test_flags_parse_into_the_options(capsys, tmp_path):
    data = make_dataset(tmp_path / "data", train=2, val=1, size=128)
    run = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--model", "pix2pix", "--data", str(data), "--out", str(run), "--netG", "unet_128",
                         "--lambda-l1", "50", "--ngf", "4", "--ndf", "4", "--load-size", "128", "--crop-size", "128",
                         "--direction", "BtoA", "--no-flip", "--loss", "l1+gan", "--gan-mode", "lsgan", "--max-steps", "1",
                         "--workers", "0", "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert f"trained: {run}" in out
    options = json.loads((run / "config.json").read_text())["options"]
    assert options | {"netG": "unet_128", "lambda_l1": 50.0, "ngf": 4, "direction": "BtoA", "flip": False,
                      "loss": "l1+gan", "gan_mode": "lsgan", "max_steps": 1} == options
    assert options["netD"] == "patch70" and options["lr"] == 2e-4  # untouched defaults


def test_run_directory_rules(capsys, tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--model", "pix2pix", "--data", str(tiny_data), "--out", str(run), *TINY_ARGS, "--max-steps", "1"]
    assert cli(capsys, *args)[0] == 0
    code, _, err = cli(capsys, *args, "--lambda-l1", "10")
    assert code == 1
    assert err.count("\n") == 1 and str(run) in err and "options.lambda_l1: 100.0 -> 10.0" in err and "--overwrite" in err
    code, _, err = cli(capsys, *args)
    assert code == 1 and f"--resume {run}" in err
    code, _, err = cli(capsys, *args, "--lambda-l1", "10", "--overwrite")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["options"]["lambda_l1"] == 10.0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "train", "--data", str(tiny_data), "--out", str(tmp_path / "other"), *TINY_ARGS)
    assert code == 1 and "not empty" in err and (tmp_path / "other" / "notes.txt").exists()


def test_bad_datasets_fail_with_one_line(capsys, tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    odd = tmp_path / "odd" / "train" / "x.png"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(encode_image(np.zeros((32, 65, 3), np.uint8), "png"))
    cases = [
        (tmp_path / "missing", "no such dataset folder"),
        (tmp_path / "empty", "no image pairs in this split"),
        (tmp_path / "odd", "odd width 65"),
    ]
    for data, problem in cases:
        run = tmp_path / f"run-{data.name}"
        code, out, err = cli(capsys, "train", "--data", str(data), "--out", str(run), *TINY_ARGS)
        assert code == 1, (data, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and problem in err, err
        assert not run.exists()  # no partial output
    code, _, err = cli(capsys, "train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--netG", "unet_100")
    assert code == 1 and "--netG: invalid value 'unet_100'" in err
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path / "nothing"))
    assert code == 1 and "config.json" in err
