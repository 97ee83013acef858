"""Settings of the pix2pix tests: tiny networks and options; one CPU thread per test module."""

from __future__ import annotations

import dataclasses

import pytest
from p2p_testutils import make_dataset, target_of  # noqa: F401  (the pix2pix tests import them from here)
from p2ptools_pix2pix.options import Pix2PixOptions

#: Small settings shared by the training tests (32x32, tiny widths, no worker processes).
TINY = {"netG": "unet_32", "netD": "patch16", "ngf": 8, "ndf": 8, "load_size": 36, "crop_size": 32,
        "epochs": 2, "epochs_decay": 1, "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1}

#: The same as command-line flags.
TINY_ARGS = ["--netG", "unet_32", "--netD", "patch16", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
             "--epochs", "2", "--epochs-decay", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
             "--log-every", "1", "--no-progress"]


def tiny_options(**changes) -> Pix2PixOptions:
    return dataclasses.replace(Pix2PixOptions(**TINY), **changes)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One CPU thread here and in subprocesses: the shared test machine is oversubscribed, where
    OpenMP's spinning threads slow tiny convolutions down many times. Module-scoped so that
    module-scoped runs use it too: bit-exact comparisons need equal thread counts (a reduction
    split over two threads adds in another order)."""
    import os

    import torch

    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def train_until_crash(monkeypatch, options: Pix2PixOptions, data, run, *, crash_at: int) -> None:
    """Train ``run`` until its ``crash_at``-th step raises RuntimeError (a crash between checkpoints),
    then put the real step back so that a resume trains normally."""
    from p2ptools_pix2pix import trainer

    step_fn, calls = trainer.train_step, {"n": 0}

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise RuntimeError("simulated crash")
        return step_fn(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train(options, data, run, progress=False)
    monkeypatch.setattr(trainer, "train_step", step_fn)
