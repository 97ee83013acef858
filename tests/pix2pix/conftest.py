"""Fixtures of the pix2pix tests: tiny aligned datasets where B is a fixed function of A."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from p2ptools.pairs import write_pair
from p2ptools_pix2pix.options import Pix2PixOptions


def target_of(a: np.ndarray) -> np.ndarray:
    """B = colour-inverted A with R and B swapped: a per-pixel function the networks can learn."""
    return np.ascontiguousarray(255 - a[:, :, ::-1])


def make_dataset(root: Path, *, train: int = 8, val: int = 4, size: int = 32, seed: int = 0, fmt: str = "png") -> Path:
    """Write ``root/{train,val}/NNN.<fmt>`` pairs of smooth random images (size x size halves)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            a = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
            write_pair(root / split / f"{i:03d}.{fmt}", a, target_of(a))
    return root


#: Small settings shared by the training tests (32x32, tiny widths, no worker processes).
TINY = {"netG": "unet_32", "netD": "patch16", "ngf": 8, "ndf": 8, "load_size": 36, "crop_size": 32,
        "epochs": 2, "epochs_decay": 1, "batch_size": 2, "workers": 0, "device": "cpu", "log_every": 1}

#: The same as command-line flags.
TINY_ARGS = ["--netG", "unet_32", "--netD", "patch16", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
             "--epochs", "2", "--epochs-decay", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
             "--log-every", "1", "--no-progress"]


def tiny_options(**changes) -> Pix2PixOptions:
    return dataclasses.replace(Pix2PixOptions(**TINY), **changes)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """8 train + 4 val pairs of 32x32 halves (read-only: tests must not modify it)."""
    return make_dataset(tmp_path_factory.mktemp("pix2pix-data"))


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
