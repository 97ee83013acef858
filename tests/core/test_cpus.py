"""``--workers`` defaults follow the cores this process may use (its affinity), not the host's."""

from __future__ import annotations

import os

import pytest
from p2ptools_pix2pix.options import Pix2PixOptions

from p2ptools import cpus
from p2ptools.buildkit import BuildOptions


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity call on this platform")
def test_available_cpus_is_the_affinity_mask():
    assert cpus.available_cpus() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cores", "train", "build"), [(1, 1, 1), (2, 2, 2), (6, 4, 6), (64, 4, 8)])
def test_worker_defaults(monkeypatch, cores, train, build):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the host's count is not what we may use
    assert cpus.available_cpus() == cores
    assert Pix2PixOptions().workers == train and BuildOptions().workers == build


def test_without_an_affinity_call_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert cpus.available_cpus() == 3 and Pix2PixOptions().workers == 3


def test_train_help_shows_the_machine_default(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    row = next(line for line in cli("train", "--help").stdout.splitlines() if " --workers " in line)
    assert "min(4, cores available)" in row and "[default: 1]" in row
