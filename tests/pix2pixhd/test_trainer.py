"""The pix2pixHD trainer on tiny data: it learns, label maps + instances + local enhancer train
with --niter-fix-global, the VGG loss uses the given file, bad setups fail before writing."""

from __future__ import annotations

import os
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_dataset, make_label_dataset  # noqa: E402
from p2ptools_pix2pixhd.options import Pix2PixHDOptions  # noqa: E402
from p2ptools_pix2pixhd.trainer import train  # noqa: E402

from p2ptools.errors import ConfigError, InputFileError  # noqa: E402
from p2ptools.pairs import iter_split, read_pair  # noqa: E402

#: tiny widths, no VGG, no worker processes
TINY = {"ngf": 8, "ndf": 8, "n_downsample_global": 2, "n_blocks_global": 1, "n_layers_D": 2, "num_D": 2, "vgg_loss": False,
        "preprocess": "none", "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1}


def tiny(**changes) -> Pix2PixHDOptions:
    return dataclasses.replace(Pix2PixHDOptions(**TINY), **changes)


def log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_rgb_run_learns_well_below_copying_the_input(tmp_path):
    data = make_dataset(tmp_path / "data", train=8, val=2, size=32)
    run = train(tiny(label_nc=0, instance=False, epochs=10, epochs_decay=5, lr=2e-3, log_every=4), data, tmp_path / "run", progress=False)
    copy = np.mean([np.abs(a / 127.5 - b / 127.5).mean() for a, b in map(read_pair, iter_split(data, "val"))])
    vals = [r["val_L1"] for r in log(run) if "val_L1" in r]
    assert len(vals) == 15 and vals[-1] < 0.5 * copy, (vals, copy)
    config = json.loads((run / "config.json").read_text())
    assert config["plugin"] == "pix2pixhd" and config["options"]["label_nc"] == 0
    assert {"G_GAN", "G_GAN_Feat", "D_fake", "D_real"} <= set(log(run)[0]) and "G_VGG" not in log(run)[0]
    assert (run / "samples" / "epoch_0015.png").is_file() and (run / "checkpoints" / "latest_G.safetensors").is_file()


def test_label_maps_local_enhancer_and_niter_fix_global(tmp_path):
    data = make_label_dataset(tmp_path / "data", train=4, val=2, label_nc=5)
    options = tiny(netG="local", ngf=4, n_downsample_global=1, n_blocks_local=1, label_nc=5, direction="BtoA",
                   niter_fix_global=1, epochs=1, epochs_decay=0, max_steps=2, ganfeat_loss=False)
    torch.manual_seed(options.seed)
    from p2ptools_pix2pixhd.trainer import build_generator

    initial = build_generator(options).state_dict()
    run = train(options, data, tmp_path / "run", progress=False)
    after = load_file(str(run / "checkpoints" / "latest_G.safetensors"))
    assert set(after) == set(initial)
    for key, value in initial.items():
        changed = not torch.equal(value, after[key])
        assert changed == key.startswith("model1_"), key  # only the local enhancer trained in epoch 1
    config = json.loads((run / "config.json").read_text())
    assert config["generator_params"] == sum(v.numel() for v in initial.values())
    assert "G_GAN_Feat" not in log(run)[0]
    # a second epoch trains everything
    run2 = train(dataclasses.replace(options, epochs=2, max_steps=4), data, tmp_path / "run2", progress=False)
    after2 = load_file(str(run2 / "checkpoints" / "latest_G.safetensors"))
    assert not torch.equal(after2["model.1.weight"], initial["model.1.weight"])


def test_vgg_loss_from_the_given_file(tmp_path):
    from hd_testutils import random_vgg19_file

    vgg = tmp_path / "vgg19.pth"
    random_vgg19_file(vgg)
    data = make_dataset(tmp_path / "data", train=2, val=1, size=32)
    run = train(tiny(label_nc=0, instance=False, vgg_loss=True, vgg_weights=vgg, epochs=1, epochs_decay=0), data,
                tmp_path / "run", progress=False)
    assert log(run)[0]["G_VGG"] > 0


def test_setup_errors_before_anything_is_written(tmp_path):
    data = make_label_dataset(tmp_path / "data", train=2, val=1)
    with pytest.raises(ConfigError, match="--vgg-weights FILE.*--no-vgg-loss"):
        train(tiny(vgg_loss=True), data, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="--niter-fix-global needs --netG local"):
        train(tiny(niter_fix_global=1), data, tmp_path / "run", progress=False)
    (data / "instance_ids" / "val" / "000.png").unlink()
    with pytest.raises(InputFileError, match="instance_ids/val/000.png: missing instance_ids map.*--no-instance"):
        train(tiny(label_nc=5, direction="BtoA"), data, tmp_path / "run", progress=False)
    with pytest.raises(InputFileError, match="multiples of 8"):
        train(tiny(label_nc=5, direction="BtoA", instance=False, n_downsample_global=3, preprocess="scale_width", load_size=36),
              data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_init_from_a_global_run_fills_the_local_enhancers_global_part(tmp_path):
    data = make_label_dataset(tmp_path / "data", train=2, val=1, label_nc=5)
    base = {"ngf": 4, "n_downsample_global": 1, "label_nc": 5, "direction": "BtoA", "epochs": 1, "epochs_decay": 0, "max_steps": 1}
    global_run = train(tiny(**{**base, "ngf": 8}), data, tmp_path / "global", progress=False)  # the local's global part runs at 2 * 4
    source = load_file(str(global_run / "checkpoints" / "latest_G.safetensors"))
    options = tiny(**base, netG="local", n_blocks_local=1, init_from=global_run, lr=0.0)  # lr 0: weights stay as loaded
    run = train(options, data, tmp_path / "local", progress=False)
    local = load_file(str(run / "checkpoints" / "latest_G.safetensors"))
    shared = [k for k in local if k.startswith("model.")]
    assert shared and all(torch.equal(local[k], source[k]) for k in shared)
    assert "model.38.weight" not in local  # the global run's output layers have no place in the enhancer
    from safetensors.torch import save_file

    (tmp_path / "other" / "checkpoints").mkdir(parents=True)
    save_file({"encoder.weight": torch.zeros(2, 2)}, str(tmp_path / "other" / "checkpoints" / "latest_G.safetensors"))
    with pytest.raises(ConfigError, match="--init-from .* no tensor"):
        train(tiny(**base, init_from=tmp_path / "other"), data, tmp_path / "x", progress=False)


def test_step_benchmark_runs_and_both_steps_compute_the_same_update(tmp_path):
    import importlib.util

    path = Path(__file__).parents[2] / "benchmarks" / "pix2pixhd_step.py"
    spec = importlib.util.spec_from_file_location("pix2pixhd_step_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--height", "32", "--width", "64", "--ngf", "4", "--ndf", "4", "--steps", "1", "--repeats", "1",
                         "--json", str(tmp_path / "r.json")])
    assert report["ours_s_per_step"] > 0 and report["official_s_per_step"] > 0
    assert report["max_update"] > 1e-3 and report["max_update_difference"] < 1e-4 * max(1.0, report["max_update"])
    assert json.loads((tmp_path / "r.json").read_text())["ratio"] == report["ratio"]


def test_workers_default_to_the_cores_available():
    """--workers defaults to min(4, cores available), as pix2pix's: 4 on 2 cores made torch warn twice."""
    from p2ptools.cpus import default_workers

    from p2ptools_pix2pixhd.options import Pix2PixHDOptions

    assert Pix2PixHDOptions().workers == default_workers(4) == min(4, len(os.sched_getaffinity(0)))
