"""The registry smoke test: every registered model plugin trains a few CPU steps on tiny data with
its own smoke_options(), loads through the registry, translates, and its outputs are evaluated;
both built-in models appear as rows of one ablation table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from p2p_testutils import make_dataset, run_p2ptools
from p2ptools import registry
from p2ptools.imageio import read_image
from p2ptools.plugin import LoadOptions, TrainRequest
from p2ptools.translate import resolve_inputs, translate_files


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("smoke-data"), train=4, val=2, size=32)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> dict[str, Path]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    try:
        for name in registry.names("models"):
            plugin = registry.load("models", name)()
            runs[name] = plugin.train(plugin.smoke_options(), TrainRequest(tiny_data, tmp_path_factory.mktemp(name) / "run", progress=False))
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("name", registry.names("models"))
def test_every_registered_model_trains_loads_and_translates(name, trained, tiny_data, tmp_path):
    run = trained[name]
    config = json.loads((run / "config.json").read_text())
    assert config["plugin"] == name
    model = registry.load_run(run, LoadOptions(eval_mode=True))
    out = tmp_path / "out"
    count = translate_files(model, resolve_inputs(tiny_data, split="val"), out, progress=False)
    assert count == 2
    for stem in ("000", "001"):
        image = read_image(out / f"{stem}.png")
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert (out / "target" / f"{stem}.png").is_file()


@pytest.mark.parametrize("name", registry.names("models"))
def test_translating_a_run_imports_no_training_code(name, trained):
    """Loading and translating a run (in a fresh interpreter) imports no trainer module and not the
    shared epoch loop: the builders and the loader live apart from the training code."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from p2ptools import registry\nfrom p2ptools.plugin import LoadOptions\n"
            f"model = registry.load_run({str(trained[name])!r}, LoadOptions(device='cpu'))\n"
            "assert model.translate([np.zeros((32, 32, 3), np.uint8)])[0].shape == (32, 32, 3)\n"
            "print(sorted(m for m in sys.modules if m.rsplit('.', 1)[-1] == 'trainer' or m == 'p2ptools.training.epoch_loop'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_both_models_in_one_ablation_table(trained, tmp_path):
    assert {"pix2pix", "pix2pixhd"} <= set(trained)
    args = ["eval", "--color", "--split", "val", "--out", str(tmp_path / "report")]
    for name in ("pix2pix", "pix2pixhd"):
        args += ["--runs", str(trained[name])]
    result = run_p2ptools(*args)
    assert result.code == 0, result.stderr
    table = (tmp_path / "report" / "table.csv").read_text()
    assert "Model" in table.splitlines()[0]
    rows = [line.split(",")[0] for line in table.splitlines()[1:]]
    assert "pix2pix" in rows and "pix2pixhd" in rows


def test_run_labels_across_models():
    from p2ptools.eval.tables import run_labels

    configs = [{"plugin": "pix2pix", "options": {"loss": "l1"}}, {"plugin": "pix2pix", "options": {"loss": "l1+cgan"}},
               {"plugin": "pix2pixhd", "options": {"ngf": 64}}]
    assert run_labels(configs, ["a", "b", "c"]) == ("Model", ["pix2pix: L1", "pix2pix: L1+cGAN", "pix2pixhd"])

def test_models_lists_both():
    result = run_p2ptools("models")
    assert result.code == 0 and "pix2pix " in result.stdout and "pix2pixhd" in result.stdout
