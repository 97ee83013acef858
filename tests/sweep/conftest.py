"""A tiny sweep, run once per session (2 rows x 2 seeds of 32x32 pairs, 4 steps each, on the CPU),
that the sweep tests compare against."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from p2p_testutils import make_dataset

sys.path.insert(0, str(Path(__file__).parent))
from sweep_specs import write_spec  # noqa: E402


@pytest.fixture(scope="session")
def sweep_data(tmp_path_factory) -> Path:
    """4 train + 2 val pairs of 32x32 halves (read-only)."""
    return make_dataset(tmp_path_factory.mktemp("sweep-data") / "data", train=4, val=2, size=32)


@pytest.fixture(scope="session")
def reference_sweep(tmp_path_factory, sweep_data) -> Path:
    """The reference sweep directory: the test spec run through the local backend (in-process)."""
    from p2ptools.sweep.backends import get_backend
    from p2ptools.sweep.runner import run_sweep
    from p2ptools.sweep.spec import load_spec

    folder = tmp_path_factory.mktemp("reference")
    spec = load_spec(write_spec(folder, sweep_data))
    outcome = run_sweep(spec, folder / "sweep", get_backend("local", jobs=1), progress=False)
    assert not outcome.failed, outcome.failed
    return folder / "sweep"
