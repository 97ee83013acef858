"""The colorization builder: A gray (Rec. 601 luma or CIELab L), B colour, splits and manifest."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from p2p_testutils import kill_mid_build_then_resume
from p2ptools_datasets.colorization import ColorizationBuilder, ColorizationOptions, to_gray
from skimage.color import rgb2lab

from p2ptools.buildkit import BuildOptions
from p2ptools.imageio import encode_image
from p2ptools.pairs import load_manifest, read_pair


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))


def photos(root: Path, n: int = 20) -> Path:
    rng = np.random.default_rng(3)
    for i in range(n):
        folder = root / f"album{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
        img = np.kron(base, np.ones((6, 6, 1), np.uint8))  # 24x36 colour blocks
        (folder / f"photo_{i:02d}.png").write_bytes(encode_image(img, "png"))
    return root


def build(src, out, **opts):
    return ColorizationBuilder(ColorizationOptions(**opts)).build([src], out, BuildOptions(size=24, workers=1, format="png"), progress=False)


def test_luma_gray_and_colour(tmp_path):
    manifest = build(photos(tmp_path / "src"), tmp_path / "out", val_fraction=0.1, test_fraction=0.2)
    assert manifest.counts == {"train": 14, "val": 2, "test": 4}
    assert manifest.extras["input_channels"] == 3 and manifest.image_size == [24, 24]
    for rec in manifest.pairs:
        assert rec.sources == [f"album{int(rec.name[-2:]) % 3}/{rec.name}.png"]
        a, b = read_pair(tmp_path / "out" / rec.file)
        assert (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 1] == a[:, :, 2]).all()
        # B is the colour photo (24x36 -> centre 24x24 crop, no resize needed)
        assert np.abs(b.astype(int)[:, :, 0] - b[:, :, 2]).max() > 20
        luma = b.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(a[:, :, 0] - luma).max() <= 1.0


def test_lab_and_single_channel(tmp_path, cli):
    src = photos(tmp_path / "src", 6)
    res = cli("make-dataset", "colorization", "--source", src, "--out", tmp_path / "out", "--size", "24", "--gray", "lab", "--gray-channels", "1", "--format", "png", "--no-progress")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "out")
    assert manifest.extras["input_channels"] == 1 and "CIELab" in manifest.extras["a"]
    assert manifest.options["builder_options"]["gray_channels"] == 1
    for rec in manifest.pairs:
        a, b = read_pair(tmp_path / "out" / rec.file)
        assert a.shape == b.shape == (24, 24, 3) and (a == a[:, :, :1]).all()
        lightness = rgb2lab(b)[:, :, 0] * 2.55
        assert np.abs(a[:, :, 0] - lightness).max() <= 0.5 + 1e-6


def test_archive_source_and_errors(tmp_path, cli):
    src = photos(tmp_path / "src", 5)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*.png")):
            zf.write(path, path.relative_to(src).as_posix())
    a = build(src, tmp_path / "a")
    b = build(archive, tmp_path / "b")
    assert [(p.split, p.name, p.sources, p.sha256) for p in a.pairs] == [(p.split, p.name, p.sources, p.sha256) for p in b.pairs]

    res = cli("make-dataset", "colorization", "--source", tmp_path / "missing", "--out", tmp_path / "o", "--no-progress")
    assert res.code == 1 and res.stderr.strip() == f"error: {tmp_path / 'missing'}: no such file or folder"
    res = cli("make-dataset", "colorization", "--source", src, "--out", tmp_path / "o", "--gray-channels", "2", "--no-progress")
    assert res.code == 1 and "--gray-channels: invalid value 2; choose from 1, 3" in res.stderr
    with pytest.raises(ValueError, match="expected an \\(H, W, 3\\) uint8 image"):
        to_gray(np.zeros((4, 4), np.uint8))


def test_resume_after_sigkill(tmp_path):
    src = photos(tmp_path / "src", 16)
    args = ["--source", src, "--size", "24", "--format", "png", "--workers", "2", "--no-progress"]
    kill_mid_build_then_resume("colorization", args, tmp_path / "killed", tmp_path / "clean")
