"""The training loop: it learns, every objective builds the right networks, files on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_dataset, tiny_options  # noqa: E402
from p2ptools_pix2pix.losses import parse_objective  # noqa: E402
from p2ptools_pix2pix.trainer import build_networks, evaluate, lr_lambda, train  # noqa: E402

from p2ptools.training.data import AlignedPairs, Jitter, make_loader, split_files  # noqa: E402


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_training_run_lowers_validation_l1(tmp_path):
    """A real run: 64x64 pairs, 200 steps of the full objective (L1 + cGAN) on the CPU."""
    data = make_dataset(tmp_path / "data", train=32, val=4, size=64)
    options = tiny_options(netG="unet_64", netD="patch70", ngf=16, ndf=16, load_size=72, crop_size=64, epochs=15,
                           epochs_decay=10, batch_size=4, lr=1e-3, dropout=False, log_every=10)
    # The untrained generator (same seed, so the same initial weights), scored the same way.
    torch.manual_seed(options.seed)
    net_g, _ = build_networks(options, parse_objective(options.loss))
    val = AlignedPairs(split_files(data, "val"), Jitter("resize_and_crop", 72, 64, train=False))
    before, _ = evaluate(net_g, make_loader(val, batch_size=4, workers=0, sampler=None, pin_memory=False),
                         torch.device("cpu"), False, None, 0)
    run = train(options, data, tmp_path / "run", progress=False)
    log = read_log(run)
    val_l1 = [r["val_L1"] for r in log if "val_L1" in r]
    assert len(val_l1) == 25  # one per epoch
    assert val_l1[-1] < 0.25 * before, (before, val_l1)  # measured: 0.330 -> 0.034
    steps = [r for r in log if "G_L1_weighted" in r]
    assert steps[-1]["step"] == 200  # 32 pairs / batch 4 * 25 epochs
    assert set(steps[0]) == {"step", "epoch", "G_GAN", "G_L1_weighted", "D_real", "D_fake", "lr", "images_per_s"}
    assert steps[-1]["G_L1_weighted"] < 0.5 * steps[0]["G_L1_weighted"]
    assert steps[-1]["lr"] < options.lr / 5  # the linear decay ran


def test_lr_schedule_is_the_reference_rule():
    rule = lr_lambda(3, 2)  # 3 constant epochs, then 2 of linear decay: 1 - (e + 1 - 3) / 3
    assert [rule(e) for e in range(5)] == pytest.approx([1, 1, 1, 2 / 3, 1 / 3])


@pytest.mark.parametrize(
    ("loss", "d_channels"), [("l1", None), ("gan", 3), ("cgan", 6), ("l1+gan", 3), ("l1+cgan", 6)]
)
def test_each_objective_trains_with_the_right_networks(tiny_data, tmp_path, loss, d_channels):
    run = train(tiny_options(loss=loss, max_steps=1), tiny_data, tmp_path / "run", progress=False)
    files = {p.name for p in (run / "checkpoints").iterdir()}
    state = json.loads((run / "checkpoints" / "latest_state.json").read_text())
    config = json.loads((run / "config.json").read_text())
    opt_tensors = load_file(str(run / "checkpoints" / "latest_state.safetensors"))
    assert state["step"] == 1
    step = read_log(run)[0]
    if d_channels is None:
        assert "latest_D.safetensors" not in files
        assert sorted(state["optimizers"]) == ["G"] and state["networks"] == ["G"]
        assert not any(k.startswith("D.") for k in opt_tensors)
        assert config["discriminator_params"] is None
        assert step["G_GAN"] == 0 and "D_real" not in step
    else:
        d = load_file(str(run / "checkpoints" / "latest_D.safetensors"))
        assert d["model.0.weight"].shape[1] == d_channels
        assert sorted(state["optimizers"]) == ["D", "G"]
        assert any(k.startswith("D.") for k in opt_tensors)
        assert config["discriminator_params"] == sum(v.numel() for k, v in d.items() if "running" not in k and "num_batches" not in k)
        assert step["G_GAN"] > 0 and step["D_real"] > 0
    assert (step["G_L1_weighted"] > 0) == loss.startswith("l1")


def test_run_directory_contents(tiny_data, tmp_path):
    run = train(tiny_options(epochs=1, epochs_decay=1), tiny_data, tmp_path / "run", progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["plugin"] == "pix2pix" and config["plugin_version"] == "0.1.0"
    assert config["options"]["netG"] == "unet_32" and config["data"] == str(tiny_data.resolve())
    assert config["data_manifest_sha256"] is None  # the fixture has no manifest
    g = load_file(str(run / "checkpoints" / "latest_G.safetensors"))
    assert config["generator_params"] == sum(v.numel() for k, v in g.items() if "running" not in k and "num_batches" not in k)
    assert any("running_mean" in k for k in g)  # batch-norm buffers are stored
    samples = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert samples == ["epoch_0001.png", "epoch_0002.png"]
    index = (run / "samples" / "index.html").read_text()
    assert all(f'src="{name}"' in index for name in samples)
    from p2ptools.imageio import read_image

    from p2ptools.training.samples import sample_grid, tile_origin

    grid = read_image(run / "samples" / "epoch_0002.png")
    assert grid.shape == sample_grid(*[[np.zeros((32, 32), np.uint8)] * 4] * 3).shape  # 4 val pairs, input | output | target
    val_a = read_image(tiny_data / "val" / "000.png")[:, :32]
    y, x = tile_origin(0, 0, 32, 32)
    assert abs(grid[y : y + 32, x : x + 32].astype(int) - val_a.astype(int)).max() <= 2  # resize to 32 of 32: unchanged
    assert "val_L1 " in index  # each epoch with its validation L1
    state = json.loads((run / "checkpoints" / "latest_state.json").read_text())
    assert (state["step"], state["epoch"], state["batches_done"]) == (8, 2, 0)
    assert not list(run.glob(".tmp-*")) and not list(run.glob(".old-*"))


def test_setups_that_cannot_work_are_refused_up_front(tiny_data, tmp_path):
    from p2ptools_pix2pix.trainer import check_setup

    from p2ptools.errors import ConfigError
    from p2ptools.training.runtime import Runtime

    with pytest.raises(ConfigError, match="--crop-size 48: --netG unet_32 needs sizes divisible by 32"):
        train(tiny_options(crop_size=48, load_size=56), tiny_data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    two_cpus = Runtime(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), distributed=True)
    with pytest.raises(ConfigError, match="syncbatch needs CUDA"):
        check_setup(tiny_options(norm="syncbatch"), two_cpus)
    check_setup(tiny_options(norm="syncbatch"), Runtime(0, 1, 0, torch.device("cpu"), False))  # one process: plain BN
    with pytest.raises(ConfigError, match=r"--batch-size: invalid value 0; accepted range \[1, 4096\]"):
        check_setup(tiny_options(batch_size=0), two_cpus)


def test_benchmark_runs_and_reports(tmp_path):
    """benchmarks/train_step.py end to end on toy settings (the numbers are not asserted: speed is
    measured by running the benchmark, never in tests)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(["--size", "32", "--ngf", "4", "--steps", "4", "--warmup", "1", "--chunk", "2", "--pairs", "4",
                "--workers", "0", "--data-passes", "1", "--device", "cpu", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["data_pipeline"]["ours"] > 0 and report["data_pipeline"]["baseline_pil"] > 0
    (row,) = report["train"]
    assert row["batch_size"] == 1 and row["precision"] == "fp32" and row["steps"] == 4
    assert row["ratio"] == pytest.approx(row["ours_images_per_s"] / row["baseline_images_per_s"])
    assert 0 < row["baseline_mean_L1"] < 2 and 0 < row["ours_mean_L1"] < 2
