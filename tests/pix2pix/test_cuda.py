"""The CUDA paths (marker ``cuda``; skipped without a GPU, run by benchmarks/gpu_check.sh):
bf16/fp16 autocast with channels_last, torch.compile, exact resume on the GPU, translation on
the GPU against the CPU, the WGAN-GP double backward under autocast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_options  # noqa: E402
from p2ptools_pix2pix import trainer  # noqa: E402

from p2ptools.plugin import LoadOptions  # noqa: E402
from p2ptools.registry import load_run  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_mixed_precision_channels_last_training(tiny_data, tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    options = tiny_options(device="cuda", precision=precision, channels_last=True, epochs=2, epochs_decay=1, lr=1e-3,
                           gan_mode="wgangp" if precision == "fp16" else "vanilla")
    run = trainer.train(options, tiny_data, tmp_path / "run", progress=False)
    steps = [r for r in read_log(run) if "G_L1_weighted" in r]
    assert len(steps) == 12 and all(np.isfinite(r["G_L1_weighted"]) and np.isfinite(r["D_real"]) for r in steps)
    val = [r["val_L1"] for r in read_log(run) if "val_L1" in r]
    assert val[-1] < val[0]  # it learns
    state = json.loads((run / "checkpoints" / "latest_state.json").read_text())
    assert (state["scaler"] is not None) == (precision == "fp16")


def test_compiled_training_runs(tiny_data, tmp_path):
    options = tiny_options(device="cuda", compile=True, max_steps=3)
    run = trainer.train(options, tiny_data, tmp_path / "run", progress=False)
    assert [r["step"] for r in read_log(run) if "G_L1_weighted" in r] == [1, 2, 3]


def test_translation_on_the_gpu_matches_the_cpu(tiny_data, tmp_path):
    run = trainer.train(tiny_options(device="cuda", precision="fp32", max_steps=2), tiny_data, tmp_path / "run", progress=False)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    on_cpu = load_run(run, LoadOptions(device="cpu")).translate([image])[0].astype(int)
    on_gpu = load_run(run, LoadOptions(device="cuda")).translate([image])[0].astype(int)
    assert np.abs(on_cpu - on_gpu).max() <= 2
