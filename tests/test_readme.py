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


# ------------------------------------------------------------------ the README's commands, run
# The tour's Cityscapes pipeline and the pix2pixHD recipe, parsed out of README.md and run end to end
# on a generated Cityscapes-layout tree (the official archives' layout, 64x32 frames), with tiny
# options appended (later values of an option win). A README edit that breaks one of them fails here.


def readme_commands() -> list[str]:
    """Every ``p2ptools ...`` command line of the README's bash blocks, continuation lines joined,
    comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("p2ptools "):
                commands.append(" ".join(line.split()))
    return commands


def readme_command(prefix: str) -> list[str]:
    """The README command starting with ``prefix``, as arguments (without ``p2ptools``)."""
    import shlex

    found = [c for c in readme_commands() if c.startswith(prefix)]
    assert found, f"README.md has no command starting with {prefix!r}"
    return shlex.split(found[0])[1:]


def _substitute(args: list[str], names: dict[str, str]) -> list[str]:
    return [names.get(a, a) for a in args]


TINY_BUILD = ["--size", "32", "--workers", "1", "--no-progress"]
TINY_PIX2PIX = ["--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "32", "--crop-size", "32", "--epochs", "1",
                "--epochs-decay", "0", "--workers", "0", "--device", "cpu", "--no-progress"]
TINY_FCN = ["--width", "0.0625", "--epochs", "1", "--size", "32", "--batch-size", "2", "--device", "cpu", "--no-progress"]


@pytest.fixture
def cityscapes_sources(tmp_path, monkeypatch):
    """The two official archives (generated, in their layout) in the working folder, and the tree."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "datasets"))
    from test_cityscapes import make_tree, zip_tree

    tree = make_tree(tmp_path / "cityscapes-tree")
    zip_tree(tree, "leftImg8bit", tmp_path / "leftImg8bit_trainvaltest.zip")
    zip_tree(tree, "gtFine", tmp_path / "gtFine_trainvaltest.zip")
    monkeypatch.chdir(tmp_path)
    return tree


def test_readme_cityscapes_commands_run_end_to_end(cli, cityscapes_sources, tmp_path):
    import json

    names = {"/data/cityscapes": str(cityscapes_sources), "data/mydomain": "data/cityscapes", "fcn8s-cityscapes.safetensors": "scorers/mydomain"}

    def run(prefix: str, *tiny: str) -> None:
        res = cli(*_substitute(readme_command(prefix), names), *tiny)
        assert res.code == 0, f"{prefix}: {res.stderr}"

    run("p2ptools make-dataset cityscapes --source leftImg8bit_trainvaltest.zip", *TINY_BUILD)
    assert {"train", "val"} <= {p.name for p in (tmp_path / "data" / "cityscapes").iterdir() if p.is_dir()}
    assert not (tmp_path / "data" / "cityscapes" / "test").exists()  # Cityscapes has no public test labels
    run("p2ptools train --model pix2pix --data data/cityscapes --out runs/l1cgan", *TINY_PIX2PIX)
    run("p2ptools train --resume runs/l1cgan")
    # the ablation's L1 row: the same command with the other objective
    res = cli(*_substitute(readme_command("p2ptools train --model pix2pix --data data/cityscapes --out runs/l1cgan"), {"runs/l1cgan": "runs/l1"}),
              *TINY_PIX2PIX, "--loss", "l1")
    assert res.code == 0, res.stderr
    run("p2ptools translate runs/l1cgan --input data/cityscapes", "--no-progress")
    run("p2ptools fcn train --data data/mydomain", *[a for a in TINY_FCN if a not in ("--device", "cpu")])  # --device auto
    from p2ptools.devices import resolve_device

    assert json.loads((tmp_path / "scorers" / "mydomain" / "config.json").read_text())["device"] == str(resolve_device("auto"))
    run("p2ptools eval --fcn --results results/l1cgan", "--no-progress")
    report = json.loads((tmp_path / "reports" / "l1cgan" / "report.json").read_text())
    assert report["n_images"] == 1 and report["split"] == "val"
    run("p2ptools eval --fcn --runs runs/l1 runs/l1cgan", "--no-progress")  # translates the runs: their val split
    table = (tmp_path / "reports" / "table1" / "table.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == ["L1", "L1+cGAN", "Ground truth"]
    for row in ("L1", "L1+cGAN"):
        info = json.loads((tmp_path / "reports" / "table1" / row / "results" / "translate.json").read_text())
        assert info["split"] == "val" and info["count"] == 1 and info["device"] == str(resolve_device("auto"))
        assert json.loads((tmp_path / "reports" / "table1" / row / "report.json").read_text())["split"] == "val"
