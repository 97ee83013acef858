"""Exact resume: a run SIGKILLed after its last checkpoint, resumed, ends bit-identical to one
that was never interrupted; SIGINT saves and exits; checkpoints are swapped in atomically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS, make_dataset, tiny_options  # noqa: E402
from p2ptools_pix2pix.trainer import STALL_ENV, train  # noqa: E402

from p2ptools.training import checkpoint as ckpt  # noqa: E402

P2PTOOLS = [sys.executable, "-m", "p2ptools"]
# 8 pairs / batch 2 = 4 steps per epoch, 3 epochs = 12 steps (the third with a decayed lr). unet_64
# has a dropout layer, so the resumed run must also restore the RNG to match.
CHANGES = {"netG": "unet_64", "load_size": 72, "crop_size": 64, "checkpoint_every": 5}
ARGS = [*TINY_ARGS, "--netG", "unet_64", "--load-size", "72", "--crop-size", "64", "--checkpoint-every", "5"]


def start(args: list[str], stall_at: int) -> subprocess.Popen:
    env = dict(os.environ, **{STALL_ENV: str(stall_at)})
    return subprocess.Popen([*P2PTOOLS, "train", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal job


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.05)


def logged_step(run: Path) -> int:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
        return max((json.loads(line)["step"] for line in lines if line.endswith("}")), default=0)
    except FileNotFoundError:
        return 0


def checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "latest_state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def assert_same_checkpoints(a: Path, b: Path) -> None:
    for name in ("latest_G.safetensors", "latest_D.safetensors", "latest_state.safetensors"):
        ta, tb = load_file(str(a / "checkpoints" / name)), load_file(str(b / "checkpoints" / name))
        assert sorted(ta) == sorted(tb), name
        for key in ta:
            assert torch.equal(ta[key], tb[key]), f"{name}: {key} differs"
    sa = json.loads((a / "checkpoints" / "latest_state.json").read_text())
    sb = json.loads((b / "checkpoints" / "latest_state.json").read_text())
    assert sa == sb


@pytest.fixture(scope="module")
def data64(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data64"), train=8, val=2, size=64)


@pytest.fixture(scope="module")
def uninterrupted(data64, tmp_path_factory) -> Path:
    return train(tiny_options(**CHANGES), data64, tmp_path_factory.mktemp("run-a") / "run", progress=False)


def test_sigkill_after_checkpoint_then_resume_is_bit_exact(data64, tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = start(["--data", str(data64), "--out", str(run), *ARGS], stall_at=11)
    # checkpoint at step 10 (mid-epoch 3), step 11 done and logged, then killed without warning
    wait_for(lambda: checkpoint_step(run) == 10 and logged_step(run) == 11, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint_step(run) == 10
    done = subprocess.run([*P2PTOOLS, "train", "--resume", str(run), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert checkpoint_step(run) == 12
    assert_same_checkpoints(uninterrupted, run)
    # the log holds each step once: the killed run's step 11 was dropped and redone
    steps = [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "G_L1_weighted" in r]
    assert steps == list(range(1, 13))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_saves_a_checkpoint_and_exits(data64, tmp_path, uninterrupted, signum):
    run = tmp_path / "run"
    # with a worker process; SIGINT as a terminal's Ctrl-C sends it: to the whole process group;
    # SIGTERM as torchrun or a container runtime sends it: to the trainer process
    proc = start(["--data", str(data64), "--out", str(run), *ARGS, "--workers", "1"], stall_at=3)
    wait_for(lambda: logged_step(run) == 3, proc)
    assert checkpoint_step(run) == -1  # nothing saved yet: the first checkpoint is due at step 4
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved at step 3" in err
    assert checkpoint_step(run) == 3
    state = json.loads((run / "checkpoints" / "latest_state.json").read_text())
    assert (state["epoch"], state["batches_done"]) == (0, 3)
    # resumed in-process from the middle of epoch 1, it still ends where the uninterrupted run
    # (without worker processes) did
    train(tiny_options(**CHANGES, workers=1), data64, run, resume=True, progress=False)
    assert_same_checkpoints(uninterrupted, run)


def test_interrupted_checkpoint_swap_recovers(tmp_path):
    """A kill between the two renames of save_checkpoint leaves .tmp-checkpoints complete."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    ckpt.save_checkpoint(tmp_path, {"G": net}, {"G": opt}, {"step": 1})
    ckpt.save_checkpoint(tmp_path, {"G": net}, {"G": opt}, {"step": 2})
    (tmp_path / "checkpoints").rename(tmp_path / ".tmp-checkpoints")  # as if killed mid-swap
    ckpt.recover(tmp_path)
    assert checkpoint_step(tmp_path) == 2
    # a temp folder without its JSON commit marker is discarded, the old checkpoint kept
    (tmp_path / ".tmp-checkpoints").mkdir()
    (tmp_path / ".tmp-checkpoints" / "latest_G.safetensors").write_bytes(b"partial")
    ckpt.recover(tmp_path)
    assert not (tmp_path / ".tmp-checkpoints").exists() and checkpoint_step(tmp_path) == 2
    other = torch.nn.Linear(2, 2)
    other_opt = torch.optim.Adam(other.parameters())
    state = ckpt.load_checkpoint(tmp_path, {"G": other}, {"G": other_opt})
    assert state["step"] == 2 and torch.equal(other.weight, net.weight)
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert other_opt.param_groups[0]["betas"] == opt.param_groups[0]["betas"]


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    json.dumps(state)  # plain JSON: ints, lists, strings
    expected = torch.rand(3)
    torch.rand(5)
    ckpt.set_rng_state(json.loads(json.dumps(state)))
    assert torch.equal(torch.rand(3), expected)


def test_checkpoint_files_are_not_pickles(uninterrupted):
    for path in (uninterrupted / "checkpoints").iterdir():
        head = path.read_bytes()[:2]
        assert head != b"\x80\x04" and not path.name.endswith((".pt", ".pth", ".pkl")), path
