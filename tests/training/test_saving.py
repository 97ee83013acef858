"""Cheap checkpoints: the background writer, CPU snapshots, the minutes cadence, per-epoch files."""

from __future__ import annotations

import json
import threading
import time
import pytest
import torch
from safetensors.torch import load_file

from p2ptools.training import checkpoint as ckpt
from p2ptools.training import epoch_weights as epochs
from p2ptools.training.saving import BackgroundWriter, SaveClock


def trained_linear() -> tuple[torch.nn.Linear, torch.optim.Adam]:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    return net, opt


def test_a_second_submit_waits_for_the_first_and_jobs_run_in_order():
    events: list[str] = []
    release, started = threading.Event(), threading.Event()

    def slow(name: str) -> None:
        events.append(f"{name} start")
        started.set()
        release.wait(10)
        events.append(f"{name} end")

    with BackgroundWriter() as writer:
        writer.submit(slow, "first")  # returns at once: the caller goes on while it writes
        assert started.wait(10) and writer.busy and events == ["first start"]
        second = threading.Thread(target=writer.submit, args=(events.append, "second"))
        second.start()
        time.sleep(0.1)
        assert events == ["first start"]  # the second submit blocks until the first is done
        release.set()
        second.join(10)
    assert events == ["first start", "first end", "second"]
    assert writer.jobs_done == 2 and not writer.busy


def test_a_failed_write_is_raised_on_the_training_thread():
    def fail() -> None:
        raise OSError(28, "No space left on device")

    writer = BackgroundWriter()
    writer.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    writer.wait()  # raised once


def test_leaving_with_an_exception_still_waits_for_the_running_write():
    done = []
    with pytest.raises(KeyboardInterrupt), BackgroundWriter() as writer:
        writer.submit(lambda: (time.sleep(0.2), done.append(True)))
        raise KeyboardInterrupt
    assert done == [True]


def test_a_snapshot_is_not_changed_by_later_training(tmp_path):
    net, opt = trained_linear()
    weight, moment = net.weight.detach().clone(), opt.state_dict()["state"][0]["exp_avg"].clone()
    snapshot = ckpt.snapshot_checkpoint({"G": net}, {"G": opt}, {"step": 7, "epoch": 1, "nested": {"lr": [1e-3]}})
    net(torch.ones(1, 3)).sum().backward()
    opt.step()  # in place: weights and moments move on
    assert not torch.equal(net.weight, weight)
    ckpt.write_checkpoint(tmp_path, snapshot)
    assert torch.equal(load_file(str(tmp_path / "checkpoints" / "latest_G.safetensors"))["weight"], weight)
    assert torch.equal(load_file(str(tmp_path / "checkpoints" / "latest_state.safetensors"))["G.0.exp_avg"], moment)
    state = json.loads((tmp_path / "checkpoints" / "latest_state.json").read_text())
    assert (state["step"], state["nested"]) == (7, {"lr": [1e-3]})
    with pytest.raises(TypeError):  # not JSON-able: refused while taking the snapshot, not in the writer
        ckpt.snapshot_checkpoint({"G": net}, {"G": opt}, {"step": object()})


def test_save_clock():
    now = [100.0]
    clock = SaveClock(2, clock=lambda: now[0])
    assert not clock.due()
    now[0] += 119.9
    assert not clock.due()
    now[0] += 0.1
    assert clock.due()
    clock.reset()
    assert not clock.due()
    assert SaveClock(0).due()  # 0: every opportunity
    with pytest.raises(ValueError):
        SaveClock(-1)


def test_epoch_files_survive_checkpoint_swaps_and_interrupted_swaps(tmp_path):
    net, opt = trained_linear()
    epochs.write_epoch_weights(tmp_path, 1, ckpt.module_tensors(net))  # before any full checkpoint
    ckpt.save_checkpoint(tmp_path, {"G": net}, {"G": opt}, {"step": 1})
    epochs.write_epoch_weights(tmp_path, 2, ckpt.module_tensors(net))
    ckpt.save_checkpoint(tmp_path, {"G": net}, {"G": opt}, {"step": 2})
    assert sorted(epochs.epoch_weights(tmp_path)) == [1, 2]
    # killed between the two renames of a swap: the epoch files are in .old-checkpoints, the new
    # complete checkpoint in .tmp-checkpoints, no checkpoints/ at all
    ckpt.save_checkpoint(tmp_path / "other", {"G": net}, {"G": opt}, {"step": 3})
    (tmp_path / "checkpoints").rename(tmp_path / ".old-checkpoints")
    (tmp_path / "other" / "checkpoints").rename(tmp_path / ".tmp-checkpoints")
    ckpt.recover(tmp_path)
    assert sorted(epochs.epoch_weights(tmp_path)) == [1, 2]
    assert json.loads((tmp_path / "checkpoints" / "latest_state.json").read_text())["step"] == 3
    assert not (tmp_path / ".old-checkpoints").exists() and not (tmp_path / ".tmp-checkpoints").exists()
    epochs.drop_epoch_weights_after(tmp_path, 1)
    assert sorted(epochs.epoch_weights(tmp_path)) == [1]
    assert not list((tmp_path / "checkpoints").glob(".*partial"))
