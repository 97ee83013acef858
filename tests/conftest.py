"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from p2p_testutils import CliResult, make_dataset


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
