"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

# COLUMNS and LINES exported by a shell (pytest-xdist's workers get 80x24) would fix the width of
# rich's consoles, made when p2ptools is imported, for output that is not a terminal; tests that
# need a width set COLUMNS themselves.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

import pytest  # noqa: E402
from p2p_testutils import CliResult, make_dataset  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Every cache p2ptools writes (converted weights, colour tables) goes to a folder of this test
    session, never to the home folder of whoever runs the tests (issue 9.8)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("P2PTOOLS_CACHE", str(tmp_path_factory.mktemp("p2ptools-cache")))
        yield


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``p2ptools ARGS`` in-process through ``main()`` (error mapping included)."""
    from p2ptools.cli import main

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """8 train + 4 val pairs of 32x32 halves (read-only: tests must not modify it)."""
    return make_dataset(tmp_path_factory.mktemp("pix2pix-data"))


# ------------------------------------------------------------------ FID / LPIPS weight files
# random values in the exact layouts of the published files (tests/metric_weights.py), once per session


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory) -> Path:
    from metric_weights import make_inception_file

    return make_inception_file(tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth")


@pytest.fixture(scope="session")
def alexnet_file(tmp_path_factory) -> Path:
    from metric_weights import make_torchvision_file

    return make_torchvision_file(tmp_path_factory.mktemp("alexnet") / "alexnet-owt-7be5be79.pth", "alexnet")


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory) -> Path:
    from metric_weights import make_torchvision_file

    return make_torchvision_file(tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth", "vgg16")


#: The longest test files, run first: under ``pytest -n 2 --dist loadfile`` (``make test``) one
#: worker takes the demo while the other works through the rest, instead of the demo running alone
#: at the end.
SLOW_FIRST = ("test_demo.py", "test_ray_backend.py", "test_slurm_backend.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
