"""Every command that runs a network defaults to ``--device auto`` (the GPU when CUDA is available),
like ``train``, and records the device it used (issue 26 item 11)."""

from __future__ import annotations

import inspect
import json

import pytest

from p2ptools.cli import eval as eval_cli
from p2ptools.cli import fcn, translate
from p2ptools.devices import resolve_device


@pytest.mark.parametrize("command", [translate.translate, eval_cli.eval_command, fcn.train], ids=["translate", "eval", "fcn train"])
def test_device_defaults_to_auto(command):
    assert inspect.signature(command).parameters["device"].default == "auto"


def test_the_library_defaults_are_auto_too():
    from p2ptools.eval.api import EvalRequest
    from p2ptools.eval.fcn_train import FCNTrainOptions
    from p2ptools.plugin import LoadOptions

    assert LoadOptions().device == "auto" and FCNTrainOptions(data=".", out=".").device == "auto"
    assert inspect.signature(EvalRequest).parameters["device"].default == "auto"


def test_translate_and_eval_record_the_device_they_ran_on(cli, tiny_data, tmp_path):
    run = tmp_path / "run"
    res = cli("train", "--model", "pix2pix", "--data", tiny_data, "--out", run, "--netG", "unet_32", "--ngf", "4", "--ndf", "4",
              "--load-size", "32", "--crop-size", "32", "--max-steps", "1", "--workers", "0", "--no-progress")
    assert res.code == 0, res.stderr
    used = str(resolve_device("auto"))  # what auto means on this machine: cuda:0 with a GPU, else cpu
    out = tmp_path / "out"
    res = cli("translate", run, "--input", tiny_data, "--output", out, "--no-progress")  # no --device: auto
    assert res.code == 0, res.stderr
    info = json.loads((out / "translate.json").read_text())
    assert info["device"] == used and info["split"] == "val"  # tiny_data has train and val
    report = tmp_path / "report"
    res = cli("eval", "--results", out, "--color", "--out", report, "--no-progress")
    assert res.code == 0, res.stderr
    assert json.loads((report / "report.json").read_text())["device"] == used
