"""Tiny trained runs of every generator family, shared by the export tests (one CPU thread)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from p2p_testutils import make_dataset

sys.path.insert(0, str(Path(__file__).parent))
from export_families import FAMILIES, SIZE  # noqa: E402

from p2ptools import registry  # noqa: E402
from p2ptools.plugin import TrainRequest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def export_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("export-data"), train=2, val=2, size=SIZE)


@pytest.fixture(scope="session")
def family_run(export_data, tmp_path_factory, one_thread):
    """``family_run(name)``: the run directory of a family, trained once (64x64 pairs, a few steps)."""
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            plugin_name, changes = FAMILIES[name]
            plugin = registry.load("models", plugin_name)()
            options = dataclasses.replace(plugin.smoke_options(), **{"epochs_decay": 0, **changes})
            runs[name] = plugin.train(options, TrainRequest(export_data, tmp_path_factory.mktemp(name) / "run", progress=False))
        return runs[name]
    return get
