"""pix2pixHD on the shared epoch loop: every trainer feature pix2pix has, tested as pix2pix's are.

--checkpoint-minutes / --checkpoint-every (which steps write the full state), --save-epoch-freq
(weights-only generators per epoch), --lr-policy (the lr in the log), --log tensorboard (curves and
samples read back with TensorBoard's reader), a plateau run stopped by SIGINT and resumed, and the
flags on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_dataset  # noqa: E402
from p2p_testutils import record_checkpoint_writes, sigint_at_step  # noqa: E402
from p2ptools_pix2pixhd import trainer  # noqa: E402
from p2ptools_pix2pixhd.options import Pix2PixHDOptions  # noqa: E402
from p2ptools_pix2pixhd.plugin import Pix2PixHDPlugin  # noqa: E402

from p2ptools.cli import main  # noqa: E402
from p2ptools.pairs import iter_split, read_pair  # noqa: E402
from p2ptools.plugin import LoadOptions  # noqa: E402
from p2ptools.training import checkpoint as ckpt  # noqa: E402
from p2ptools.training import epoch_weights  # noqa: E402

TINY = {"ngf": 8, "ndf": 8, "n_downsample_global": 2, "n_blocks_global": 1, "n_layers_D": 2, "num_D": 2, "vgg_loss": False,
        "label_nc": 0, "instance": False, "preprocess": "none", "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1}
TINY_ARGS = ["--ngf", "8", "--ndf", "8", "--n-downsample-global", "2", "--n-blocks-global", "1", "--n-layers-D", "2",
             "--no-vgg-loss", "--label-nc", "0", "--no-instance", "--preprocess", "none", "--batch-size", "2", "--workers", "0",
             "--device", "cpu", "--log-every", "1", "--no-progress"]


def tiny(**changes) -> Pix2PixHDOptions:
    return dataclasses.replace(Pix2PixHDOptions(**TINY), **changes)


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("hd") / "data", train=8, val=2, size=32)  # 4 steps per epoch


def run_recording_writes(monkeypatch, run: Path, data: Path, **changes) -> list[int]:
    written = record_checkpoint_writes(monkeypatch)
    trainer.train(tiny(**changes), data, run, progress=False)
    return written


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, [12]),  # default 10 minutes: a short run writes the full state once, at its end (it wrote every epoch end before)
    ({"checkpoint_minutes": 0}, [4, 8, 12]),  # 0: every epoch end
    ({"checkpoint_every": 3}, [3, 6, 9, 12]),  # the step rule applies mid-epoch
])
def test_full_state_cadence(monkeypatch, tmp_path, data, changes, expected):
    assert run_recording_writes(monkeypatch, tmp_path / "run", data, epochs=2, epochs_decay=1, **changes) == expected


def test_full_state_written_in_the_background(monkeypatch, tmp_path, data):
    import threading

    threads: list[str] = []
    real = ckpt.write_checkpoint
    monkeypatch.setattr(ckpt, "write_checkpoint", lambda run_dir, snap: (threads.append(threading.current_thread().name),
                                                                        real(run_dir, snap))[1])
    trainer.train(tiny(epochs=1, epochs_decay=1, checkpoint_minutes=0), data, tmp_path / "run", progress=False)
    assert threads == ["p2ptools-checkpoint-writer"] * 2


def test_save_epoch_freq_keeps_weights_only_generators(monkeypatch, tmp_path, data):
    run = tmp_path / "run"
    written = run_recording_writes(monkeypatch, run, data, epochs=3, epochs_decay=1, save_epoch_freq=2)
    assert written == [16]
    files = epoch_weights.epoch_weights(run)
    assert sorted(files) == [2, 4]
    latest, last = load_file(str(run / "checkpoints" / "latest_G.safetensors")), load_file(str(files[4]))
    assert sorted(last) == sorted(latest) and all(torch.equal(last[k], latest[k]) for k in latest)
    assert not all(torch.equal(load_file(str(files[2]))[k], latest[k]) for k in latest)
    assert files[4].stat().st_size < (run / "checkpoints" / "latest_state.safetensors").stat().st_size  # no Adam moments


def test_lr_policy_step_in_the_log(tmp_path, data):
    run = trainer.train(tiny(lr_policy="step", lr_decay_iters=1, epochs=2, epochs_decay=1), data, tmp_path / "run", progress=False)
    assert [r["lr"] for r in read_log(run) if "val_L1" in r] == pytest.approx([2e-5, 2e-6, 2e-7])  # x0.1 after every epoch
    assert [r["lr"] for r in read_log(run) if "G_GAN" in r and r["epoch"] == 3] == pytest.approx([2e-6] * 4)


def test_tensorboard_holds_every_curve_and_the_samples(tmp_path, data):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = trainer.train(tiny(log="tensorboard", epochs=1, epochs_decay=1), data, tmp_path / "run", progress=False)
    acc = accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert {"train/G_GAN", "train/G_GAN_Feat", "train/D_real", "train/D_fake", "train/lr", "val/L1"} <= set(acc.Tags()["scalars"])
    steps = [r for r in read_log(run) if "G_GAN" in r]
    assert [e.value for e in acc.Scalars("train/G_GAN")] == pytest.approx([r["G_GAN"] for r in steps], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/L1")] == [4, 8] and [i.step for i in acc.Images("samples")] == [4, 8]


def test_plateau_run_stopped_by_sigint_resumes_bit_exactly(tmp_path, data):
    options = tiny(lr_policy="plateau", epochs=2, epochs_decay=1)
    whole = trainer.train(options, data, tmp_path / "whole", progress=False)
    with sigint_at_step(trainer, "train_step", 6), pytest.raises(KeyboardInterrupt):  # saved at that step boundary
        trainer.train(options, data, tmp_path / "stopped", progress=False)
    assert json.loads((tmp_path / "stopped" / "checkpoints" / "latest_state.json").read_text())["step"] == 6
    resumed = trainer.train(options, data, tmp_path / "stopped", resume=True, progress=False)
    for name in ("latest_G.safetensors", "latest_D.safetensors", "latest_state.safetensors"):
        assert (whole / "checkpoints" / name).read_bytes() == (resumed / "checkpoints" / name).read_bytes(), name


def test_the_shared_flags_are_on_the_command_line(capsys, monkeypatch, data, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit):
        main(["train", "--model", "pix2pixhd", "--help"])
    out = capsys.readouterr().out
    for flag in ("--checkpoint-minutes", "--log", "--save-epoch-freq", "--lr-policy", "--lr-decay-iters"):
        assert flag in out, flag
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "pix2pixhd", "--data", str(data), "--out", str(run), *TINY_ARGS, "--epochs", "2",
              "--epochs-decay", "0", "--lr-policy", "cosine", "--save-epoch-freq", "1", "--checkpoint-minutes", "0.5"])
    assert (info.value.code or 0) == 0, capsys.readouterr().err
    options = json.loads((run / "config.json").read_text())["options"]
    assert options | {"lr_policy": "cosine", "save_epoch_freq": 1, "checkpoint_minutes": 0.5} == options
    assert sorted(epoch_weights.epoch_weights(run)) == [1, 2]
    assert [r["lr"] for r in read_log(run) if "val_L1" in r] == pytest.approx([1e-4, 0.0], abs=1e-12)  # cosine over 2 epochs
    # translate --epoch 1 takes the generator that --save-epoch-freq kept
    a, _ = read_pair(next(iter(iter_split(data, "val"))))
    first, latest = (Pix2PixHDPlugin().load(run, LoadOptions(device="cpu", epoch=e)) for e in ("1", "latest"))
    assert (first.epoch, first.weights, latest.weights) == (1, "epoch_1_G.safetensors", "latest_G.safetensors")
    assert not np.array_equal(first.translate([a])[0], latest.translate([a])[0])


def test_a_run_written_before_the_shared_loop_resumes_bit_exactly(tmp_path, data):
    """A pix2pixHD run of the previous version: config.json without the options it gained and a
    state without "distributed". --resume fills the options' defaults and continues exactly."""
    options = tiny(epochs=2, epochs_decay=1)
    whole = trainer.train(options, data, tmp_path / "whole", progress=False)
    run = tmp_path / "old"
    with sigint_at_step(trainer, "train_step", 5), pytest.raises(KeyboardInterrupt):
        trainer.train(options, data, run, progress=False)
    config = json.loads((run / "config.json").read_text())
    for name in ("lr_policy", "lr_decay_iters", "log", "save_epoch_freq", "checkpoint_minutes"):
        del config["options"][name]
    (run / "config.json").write_text(json.dumps(config))
    state_path = run / "checkpoints" / "latest_state.json"
    state = json.loads(state_path.read_text())
    del state["distributed"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(SystemExit) as info:
        main(["train", "--resume", str(run), "--no-progress"])
    assert (info.value.code or 0) == 0
    for name in ("latest_G.safetensors", "latest_D.safetensors", "latest_state.safetensors"):
        assert (whole / "checkpoints" / name).read_bytes() == (run / "checkpoints" / name).read_bytes(), name
