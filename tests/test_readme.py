"""What a newcomer reads first: the README's first screen and what ``make`` prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def first_screen(lines: int = 30) -> str:
    return "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:lines])


def test_first_screen_says_how_to_run_the_command():
    screen = first_screen()
    assert "make demo" in screen and "make test" in screen
    assert ".venv/bin/p2ptools --help" in screen
    assert ". .venv/bin/activate" in screen


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["install", "demo"])
def test_make_prints_the_hint(target):
    # a dry run lists the recipe without running it: the hint is its last line. Run under `make test`
    # this make is nested: without the parent's MAKEFLAGS/MAKELEVEL it prints no "Leaving directory".
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", target, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                          text=True, check=True, env=env)  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1]
    assert "/nonexistent-venv/bin/p2ptools --help" in last and "/nonexistent-venv/bin/activate" in last


def test_readme_says_what_the_install_costs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"`\.venv/` takes about \d+\.\d GB \(measured \d{4}-\d\d-\d\d", text), "the measured size of .venv/"
    assert "nvidia-*" in text and "triton" in text
    assert "download.pytorch.org/whl/cpu" in text
