"""The trainer's checkpoint cadence: --checkpoint-minutes, --checkpoint-every, --save-epoch-freq."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_options  # noqa: E402
from p2p_testutils import record_checkpoint_writes  # noqa: E402
from p2ptools_pix2pix.trainer import train  # noqa: E402

from p2ptools.training import checkpoint as ckpt  # noqa: E402
from p2ptools.training import epoch_weights as epochs  # noqa: E402


def run_recording_writes(monkeypatch, tmp_path: Path, data: Path, **changes) -> tuple[Path, list[int]]:
    written = record_checkpoint_writes(monkeypatch)
    run = train(tiny_options(**changes), data, tmp_path / "run", progress=False)
    return run, written


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, [12]),  # default 10 minutes: a short run writes the full state once, at its end
    ({"checkpoint_minutes": 0}, [4, 8, 12]),  # 0: every epoch end
    ({"checkpoint_every": 3}, [3, 6, 9, 12]),  # the step rule still applies mid-epoch
])
def test_full_state_cadence(monkeypatch, tmp_path, tiny_data, changes, expected):
    _, written = run_recording_writes(monkeypatch, tmp_path, tiny_data, epochs=2, epochs_decay=1, **changes)
    assert written == expected  # 8 pairs / batch 2 = 4 steps per epoch, 3 epochs


def test_save_epoch_freq_keeps_weights_only_generators(monkeypatch, tmp_path, tiny_data):
    run, written = run_recording_writes(monkeypatch, tmp_path, tiny_data, epochs=3, epochs_decay=1, save_epoch_freq=2)
    assert written == [16]
    files = epochs.epoch_weights(run)
    assert sorted(files) == [2, 4] and [p.name for p in files.values()] == ["epoch_2_G.safetensors", "epoch_4_G.safetensors"]
    latest = load_file(str(run / "checkpoints" / "latest_G.safetensors"))
    last = load_file(str(files[4]))
    assert sorted(last) == sorted(latest) and all(torch.equal(last[k], latest[k]) for k in latest)
    assert not any(torch.equal(load_file(str(files[2]))[k], latest[k]) for k in latest if k.endswith("weight") and "model.0" in k)
    assert files[4].stat().st_size < (run / "checkpoints" / "latest_state.safetensors").stat().st_size  # no Adam moments


def test_checkpoint_benchmark_runs_and_reports(tmp_path):
    """benchmarks/train_ckpt.py end to end on toy settings (ratios are measured by running it)."""
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "train_ckpt.py"
    spec = importlib.util.spec_from_file_location("train_ckpt_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(["--pairs", "4", "--size", "32", "--ngf", "4", "--epochs", "2", "--batch-size", "2", "--repeats", "1",
                "--json", str(out)])
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"end_only", "default", "every_epoch_background", "every_epoch_sync"}
    assert report["ratio_to_end_only"]["end_only"] == 1.0
    assert report["ratio_to_end_only"]["default"] == pytest.approx(report["seconds"]["default"] / report["seconds"]["end_only"], rel=0.02)
    assert report["checkpoint_bytes"] > 0 and report["config"]["steps"] == 4


def test_a_run_written_before_new_options_existed_still_resumes(tiny_data, tmp_path):
    """config.json of an older version lacks the options added since: --resume fills their defaults
    (as from_dict does) instead of calling it another configuration."""
    import json

    from p2ptools.cli import main

    run = train(tiny_options(max_steps=2), tiny_data, tmp_path / "run", progress=False)
    config = json.loads((run / "config.json").read_text())
    for name in ("lr_policy", "init_type", "log", "save_epoch_freq", "checkpoint_minutes", "resize_backend"):
        del config["options"][name]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as info:
        main(["train", "--resume", str(run), "--no-progress"])
    assert (info.value.code or 0) == 0
    # an option it has, changed, is still another configuration
    config["options"]["ngf"] = 16
    (run / "config.json").write_text(json.dumps(config))
    from p2ptools.errors import ConfigError

    with pytest.raises(ConfigError, match="options.ngf: 16 -> 8"):
        train(tiny_options(max_steps=2), tiny_data, run, resume=True, progress=False)
