"""The reference's training options: --lr-policy, --gan-mode wgangp, --init-type, --serial-batches,
--max-dataset-size, --preprocess scale_width_and_crop; on the command line and exactly resumable."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS, tiny_options  # noqa: E402
from p2ptools_pix2pix import trainer  # noqa: E402
from test_resume import assert_same_checkpoints  # noqa: E402

from p2ptools.cli import main  # noqa: E402
from p2ptools.training.data import AlignedPairs, Jitter, resize  # noqa: E402


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def record_indices(monkeypatch) -> list[list[int]]:
    """The pair indices of every training batch, in order."""
    seen: list[list[int]] = []
    real = trainer.check_batch

    def check(batch):
        if "index" in batch and trainer_phase["train"]:
            seen.append(batch["index"].tolist())
        return real(batch)

    trainer_phase = {"train": True}
    evaluate = trainer.evaluate

    def evaluate_quietly(*args, **kwargs):
        trainer_phase["train"] = False
        try:
            return evaluate(*args, **kwargs)
        finally:
            trainer_phase["train"] = True

    monkeypatch.setattr(trainer, "check_batch", check)
    monkeypatch.setattr(trainer, "evaluate", evaluate_quietly)
    return seen


def test_serial_batches_and_max_dataset_size(monkeypatch, tiny_data, tmp_path):
    seen = record_indices(monkeypatch)
    trainer.train(tiny_options(serial_batches=True, max_dataset_size=6, epochs=1, epochs_decay=1), tiny_data,
                  tmp_path / "serial", progress=False)
    assert seen == [[0, 1], [2, 3], [4, 5]] * 2  # file order, every epoch; only the first 6 of 8 pairs
    seen.clear()
    trainer.train(tiny_options(epochs=1, epochs_decay=1), tiny_data, tmp_path / "shuffled", progress=False)
    epochs = [sum(seen[:4], []), sum(seen[4:], [])]
    assert all(sorted(e) == list(range(8)) for e in epochs) and epochs[0] != epochs[1] and epochs[0] != list(range(8))


def test_lr_policy_step_in_the_log(tiny_data, tmp_path):
    run = trainer.train(tiny_options(lr_policy="step", lr_decay_iters=1, epochs=2, epochs_decay=1), tiny_data,
                        tmp_path / "run", progress=False)
    val_lr = [r["lr"] for r in read_log(run) if "val_L1" in r]
    assert val_lr == pytest.approx([2e-5, 2e-6, 2e-7])  # x0.1 after every epoch (the lr of the next one)
    steps = [r for r in read_log(run) if "G_L1_weighted" in r]
    assert [r["lr"] for r in steps if r["epoch"] == 3] == pytest.approx([2e-6] * 4)


def test_wgangp_run_logs_the_penalty(tiny_data, tmp_path):
    run = trainer.train(tiny_options(gan_mode="wgangp", max_steps=2), tiny_data, tmp_path / "run", progress=False)
    steps = [r for r in read_log(run) if "G_L1_weighted" in r]
    assert all(r["D_GP"] > 0 for r in steps) and len(steps) == 2


def test_init_type_reaches_both_networks(tiny_data, tmp_path):
    from p2ptools_pix2pix.losses import parse_objective

    torch.manual_seed(0)
    net_g, net_d = trainer.build_networks(tiny_options(init_type="orthogonal", init_gain=1.0), parse_objective("l1+cgan"))
    for net in (net_g, net_d):
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach()
        rows = first.reshape(first.shape[0], -1)
        assert torch.allclose(rows @ rows.T, torch.eye(rows.shape[0]), atol=1e-4)


def test_plateau_wgangp_run_stopped_by_sigint_resumes_bit_exactly(monkeypatch, tiny_data, tmp_path):
    """Every new piece of state (plateau scheduler, GP interpolation draws, serial order, xavier
    init) survives an interruption: SIGINT at step 6 (mid epoch 2), resumed in-process."""
    changes = {"lr_policy": "plateau", "gan_mode": "wgangp", "init_type": "xavier", "serial_batches": True,
               "preprocess": "scale_width_and_crop", "epochs": 2, "epochs_decay": 1}
    whole = trainer.train(tiny_options(**changes), tiny_data, tmp_path / "whole", progress=False)
    step_fn = trainer.train_step
    count = {"n": 0}

    def interrupt_at_six(*args, **kwargs):
        terms = step_fn(*args, **kwargs)
        count["n"] += 1
        if count["n"] == 6:
            os.kill(os.getpid(), signal.SIGINT)  # caught by the trainer's handler: save, then stop
        return terms

    monkeypatch.setattr(trainer, "train_step", interrupt_at_six)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny_options(**changes), tiny_data, run, progress=False)
    assert json.loads((run / "checkpoints" / "latest_state.json").read_text())["step"] == 6
    monkeypatch.setattr(trainer, "train_step", step_fn)
    trainer.train(tiny_options(**changes), tiny_data, run, resume=True, progress=False)
    assert_same_checkpoints(whole, run)
    assert [r["step"] for r in read_log(run) if "G_L1_weighted" in r] == list(range(1, 13))


def test_scale_width_and_crop_crops_the_width_scaled_image():
    a = np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8)  # 80 wide, 40 high
    jitter = Jitter("scale_width_and_crop", load_size=48, crop_size=16, flip=False)
    scaled = resize(a, 48, 24)  # width 48, height 48 * 40 / 80
    positions = set()
    for seed in range(10):
        out, _ = jitter.apply(a, a, np.random.default_rng(seed))
        assert out.shape == (16, 16, 3)
        found = [(y, x) for y in range(24 - 16 + 1) for x in range(48 - 16 + 1) if np.array_equal(out, scaled[y:y + 16, x:x + 16])]
        assert found
        positions.add(found[0])
    assert len(positions) > 3  # random places
    val, _ = Jitter("scale_width_and_crop", load_size=48, crop_size=16, train=False).apply(a, a, np.random.default_rng(0))
    small = resize(a, 16, 16)  # validation: width scaled to crop_size (height at least 16), centre crop
    assert np.array_equal(val, small)
    with pytest.raises(ValueError, match="load_size 8 is smaller than crop_size 16"):
        Jitter("scale_width_and_crop", load_size=8, crop_size=16)
    assert len(AlignedPairs([], jitter)) == 0


def test_every_new_option_is_on_the_command_line(capsys, monkeypatch, tiny_data, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit):
        main(["train", "--model", "pix2pix", "--help"])
    out = capsys.readouterr().out
    for flag in ("--lr-policy", "--lr-decay-iters", "--init-type", "--init-gain", "--serial-batches", "--max-dataset-size",
                 "--save-epoch-freq", "--checkpoint-minutes", "wgangp", "scale_width_and_crop"):
        assert flag in out, flag
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tiny_data), "--out", str(run), *TINY_ARGS, "--lr-policy", "cosine", "--init-type",
              "kaiming", "--gan-mode", "wgangp", "--serial-batches", "--max-dataset-size", "4", "--save-epoch-freq", "1",
              "--checkpoint-minutes", "0.5", "--max-steps", "2"])
    assert (info.value.code or 0) == 0, capsys.readouterr().err
    options = json.loads((run / "config.json").read_text())["options"]
    assert options | {"lr_policy": "cosine", "init_type": "kaiming", "gan_mode": "wgangp", "serial_batches": True,
                      "max_dataset_size": 4, "save_epoch_freq": 1, "checkpoint_minutes": 0.5} == options
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "bad"), *TINY_ARGS, "--lr-policy", "exp"])
    assert info.value.code != 0 and "exp" in capsys.readouterr().err
