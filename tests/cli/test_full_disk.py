"""Issue 23.5: a full disk names the file. On a real file system filled to the brim (a tiny tmpfs,
mounted where the tests may), and with a few pages left so that the failure comes mid-way, every
writing command fails with one line ``error: <file>: cannot write (No space left on device)``, exit
code 1, and leaves nothing behind on that disk (no output, staging folder or lock file)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from p2p_testutils import make_dataset, pix2pix_reference, tree_bytes

from p2ptools.imageio import write_image

PAGE = 4096
ARCH = ["--netG", "unet_64", "--ngf", "8"]
TINY_TRAIN = ["--netG", "unet_32", "--netD", "patch16", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
              "--epochs", "1", "--epochs-decay", "0", "--batch-size", "2", "--workers", "0", "--device", "cpu",
              "--log-every", "1", "--no-progress", "--max-steps", "1"]
FULL = re.compile(r"^error: (?P<file>/\S.*): cannot write \(No space left on device\)$")


@contextlib.contextmanager
def tmpfs(where: Path, size: int, inodes: int):
    """A tmpfs of ``size`` bytes and ``inodes`` files mounted at ``where``; skips the test where
    mounting is not permitted."""
    where.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs mount, which needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes},mode=0755", f"p2ptools-full-{uuid.uuid4().hex[:8]}", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, kind: str, leave: int) -> None:
    """Fill ``disk`` to the brim, then free ``leave`` pages (``kind`` "bytes") or files ("inodes")."""
    if kind == "bytes":
        with open(disk / "filler", "wb", buffering=0) as fh:
            for chunk in (1 << 16, PAGE):
                with contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * chunk)
            if leave:
                fh.truncate(fh.tell() - leave * PAGE)
    else:
        (disk / "filler").mkdir()
        count = 0
        with contextlib.suppress(OSError):
            while True:
                (disk / "filler" / str(count)).touch()
                count += 1
        for i in range(leave):
            (disk / "filler" / str(i)).unlink()
    if leave == 0:
        with pytest.raises(OSError) as info:
            (disk / "probe").write_bytes(b"x")
        assert info.value.errno == errno.ENOSPC
        (disk / "probe").unlink(missing_ok=True)


def free(disk: Path, kind: str) -> int:
    """Free pages or files on ``disk``."""
    stat = os.statvfs(disk)
    return stat.f_bavail * stat.f_frsize // PAGE if kind == "bytes" else stat.f_favail


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Inputs of every command, on the ordinary disk: A/B folders, an aligned dataset, photos,
    a reference checkpoint and a run imported from it."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for side in ("A", "B"):
        for split, count in (("train", 3), ("val", 2)):
            for i in range(count):
                write_image(root / side / split / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for i in range(3):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        write_image(root / "photos" / f"{i}.png", image)
        write_image(root / "results" / f"{i}.png", 255 - image)
    make_dataset(root / "data", train=4, val=2)
    ref = pix2pix_reference()
    net = ref.randomize(ref.RefUnet(3, 3, 6, 8, "batch", use_dropout=True), 0)
    torch.save(net.state_dict(), root / "latest_net_G.pth")
    return root


def _import_run(cli, inputs: Path, out: Path):
    return cli("import-checkpoint", inputs / "latest_net_G.pth", "--model", "pix2pix", *ARCH, "--out", out)


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory) -> Path:
    from p2ptools.cli import main

    out = tmp_path_factory.mktemp("run") / "run"
    with contextlib.suppress(SystemExit):
        main(["import-checkpoint", str(inputs / "latest_net_G.pth"), "--model", "pix2pix", *ARCH, "--out", str(out)])
    assert (out / "config.json").is_file()
    return out


COMMANDS = {
    "combine": lambda cli, i, run, out: cli("make-dataset", "combine", "--source-a", i / "A", "--source-b", i / "B",
                                            "--out", out, "--workers", "2", "--format", "png", "--no-progress"),
    "translate": lambda cli, i, run, out: cli("translate", run, "--input", i / "photos", "--output", out, "--no-progress"),
    "eval": lambda cli, i, run, out: cli("eval", "--color", "--results", i / "results", "--real", i / "photos",
                                         "--out", out, "--no-progress"),
    "import-checkpoint": lambda cli, i, run, out: _import_run(cli, i, out),
    "train": lambda cli, i, run, out: cli("train", "--data", i / "data", "--out", out, *TINY_TRAIN),
}


#: Commands that keep an interrupted output to resume it (a dataset build, a training run): after a
#: full disk they may leave it, complete up to the failure, and finish it once there is room again.
RESUMABLE = {"combine", "train"}


def _finish(cli, command: str, inputs: Path, run: Path, out: Path):
    if command == "train":
        return cli("train", "--resume", out, "--no-progress")
    return COMMANDS[command](cli, inputs, run, out)


@pytest.mark.parametrize("kind", ["bytes", "inodes"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(command, kind, inputs, run, tmp_path, cli):
    """No bytes or no files left: filled to the brim, then with part of what the output needs
    (measured first on the same file system), so that the disk fills at the lock, early and late."""
    with tmpfs(tmp_path / "disk", 16 << 20, 2000) as disk:
        before = free(disk, kind)
        res = COMMANDS[command](cli, inputs, run, disk / "out")
        assert res.code == 0, res.stderr
        need = before - free(disk, kind)
        clean = tree_bytes(disk / "out")
        subprocess.run(["rm", "-rf", str(disk / "out")], check=True)
        assert need >= 3, need
        for leave in (0, need // 3, 2 * need // 3) if kind == "bytes" else (0, need // 2):
            fill(disk, kind, leave)
            res = COMMANDS[command](cli, inputs, run, disk / "out")
            assert res.code == 1, (leave, need, res.code, res.stdout, res.stderr)
            found = FULL.match(res.stderr.strip())
            assert found and "\n" not in res.stderr.strip(), (leave, res.stderr)
            assert Path(found["file"]).is_relative_to(disk), res.stderr  # a file of the output (or its staging folder)
            left = sorted(os.listdir(disk))
            if command not in RESUMABLE or left == ["filler"]:
                assert left == ["filler"], (leave, left)  # no partial output, staging folder or lock file
            else:  # an interrupted build or run, which finishes once there is room
                assert left == ["filler", "out"], (leave, left)
                subprocess.run(["rm", "-rf", str(disk / "filler")], check=True)
                finished = _finish(cli, command, inputs, run, disk / "out")
                assert finished.code == 0, finished.stderr
                if command == "combine":
                    assert tree_bytes(disk / "out") == clean  # resumed bit-exactly
                subprocess.run(["rm", "-rf", str(disk / "out")], check=True)
            subprocess.run(["rm", "-rf", str(disk / "filler")], check=True)
