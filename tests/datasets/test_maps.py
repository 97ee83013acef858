"""The maps builder: the published maps.tar.gz layout, and coordinate-named tiles split by latitude."""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import kill_mid_build_then_resume
from p2ptools_datasets.maps import MapsBuilder, MapsOptions, parse_tile_name
from PIL import Image

from p2ptools.buildkit import BuildOptions
from p2ptools.errors import ConfigError, InputFileError, P2PError
from p2ptools.imageio import read_image
from p2ptools.pairs import load_manifest, read_pair


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))


def published(root: Path, counts={"train": 3, "val": 2}) -> Path:
    """maps/{train,val}/<n>.jpg, each 2:1 with the aerial half left (greenish) and the map right (light)."""
    rng = np.random.default_rng(0)
    for split, n in counts.items():
        folder = root / "maps" / split
        folder.mkdir(parents=True)
        for i in range(1, n + 1):
            aerial = np.clip(rng.normal((40, 90, 50), 10, (48, 48, 3)), 0, 255).astype(np.uint8)
            mapped = np.clip(rng.normal((235, 230, 220), 5, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(np.concatenate([aerial, mapped], 1)).save(folder / f"{i}.jpg", quality=95)
    return root


def make_targz(root: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(root / "maps", arcname="maps")
    return dest


def test_published_archive_keeps_split_and_resizes_halves(tmp_path):
    root = published(tmp_path / "src")
    archive = make_targz(root, tmp_path / "maps.tar.gz")
    out = tmp_path / "out"
    manifest = MapsBuilder().build([archive], out, BuildOptions(size=16, format="png", workers=2), progress=False)
    assert manifest.counts == {"train": 3, "val": 2}
    assert sorted(p.name for p in (out / "val").iterdir()) == ["1.png", "2.png"]
    a, b = read_pair(out / "train/2.png")
    full = read_image(root / "maps/train/2.jpg")
    np.testing.assert_array_equal(a, cv2.resize(full[:, :48], (16, 16), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(b, cv2.resize(full[:, 48:], (16, 16), interpolation=cv2.INTER_AREA))
    assert b.mean() > 200 > 100 > a.mean()
    assert {p.name: p for p in manifest.pairs if p.split == "val"}["1"].sources == ["maps/val/1.jpg"]


def test_resplit_pools_both_splits_with_the_seed(tmp_path):
    root = published(tmp_path / "src", {"train": 6, "val": 4})
    opts = BuildOptions(size=16, workers=1, seed=5)
    manifest = MapsBuilder(MapsOptions(resplit=True, val_fraction=0.3)).build([root], tmp_path / "o", opts, progress=False)
    assert manifest.counts == {"train": 7, "val": 3}
    names = {p.name for p in manifest.pairs}
    assert names == {f"train_{i}" for i in range(1, 7)} | {f"val_{i}" for i in range(1, 5)}
    again = list(MapsBuilder(MapsOptions(resplit=True, val_fraction=0.3)).plan([root], opts))
    assert {j.name: j.split for j in again} == {p.name: p.split for p in manifest.pairs}


def tiles(root: Path, lats: list[float], lon: float = -74.0, missing_map: str | None = None) -> tuple[Path, Path]:
    aerial, maps = root / "aerial", root / "map"
    aerial.mkdir(parents=True)
    maps.mkdir(parents=True)
    for k, lat in enumerate(lats):
        stem = f"{lat:.6f}_{lon + k * 0.001:.6f}"
        cv2.imwrite(str(aerial / f"{stem}.png"), np.full((24, 24, 3), (30, 80 + k, 40), np.uint8))
        if stem != missing_map:
            cv2.imwrite(str(maps / f"{stem}.png"), np.full((24, 24, 3), (230, 230, 200 + k), np.uint8))
    return aerial, maps


def test_tiles_split_by_latitude_with_a_buffer(tmp_path):
    lats = [40.70, 40.71, 40.72, 40.745, 40.75, 40.755, 40.78, 40.79]
    aerial, maps = tiles(tmp_path, lats)
    opts = MapsOptions(aerial=aerial, map=maps, split_latitude=40.75, buffer=0.01)
    out = tmp_path / "out"
    manifest = MapsBuilder(opts).build([], out, BuildOptions(size=8, format="png", workers=1), progress=False)
    assert manifest.counts == {"train": 3, "val": 2}
    train_lats = [parse_tile_name(p.name)[0] for p in manifest.pairs if p.split == "train"]
    val_lats = [parse_tile_name(p.name)[0] for p in manifest.pairs if p.split == "val"]
    assert max(train_lats) < 40.74 and min(val_lats) > 40.76  # nothing within 0.01 deg of the split
    extras = load_manifest(out).extras
    assert extras["dropped_in_buffer"] == 3 and extras["split_latitude"] == 40.75
    rec = next(p for p in manifest.pairs if p.name.startswith("40.790000"))
    assert rec.sources == [str(aerial / f"{rec.name}.png"), str(maps / f"{rec.name}.png")]
    a, b = read_pair(out / rec.file)
    assert tuple(a[0, 0]) == (40, 87, 30) and tuple(b[0, 0]) == (207, 230, 230)  # RGB of the BGR written


def test_tiles_default_split_is_the_median_and_errors(tmp_path):
    aerial, maps = tiles(tmp_path / "t", [10.0, 11.0, 12.0, 13.0, 14.0], missing_map="13.000000_-73.997000")
    builder = MapsBuilder(MapsOptions(aerial=aerial, map=maps, buffer=0.5))
    jobs = list(builder.plan([], BuildOptions()))
    assert builder.split_latitude == 12.0 and builder.dropped == 1
    assert {j.name.split("_")[0]: j.split for j in jobs} == {"10.000000": "train", "11.000000": "train", "13.000000": "val", "14.000000": "val"}
    with pytest.raises(P2PError, match=r"13\.000000_-73\.997000\.png: aerial tile without its map tile"):
        MapsBuilder(MapsOptions(aerial=aerial, map=maps, buffer=0.5)).build([], tmp_path / "o", BuildOptions(size=8, workers=1), progress=False)
    (maps / "not-a-coordinate.png").write_bytes((maps / "10.000000_-74.000000.png").read_bytes())
    with pytest.raises(InputFileError, match=r"not-a-coordinate\.png: tile name carries no latitude"):
        list(MapsBuilder(MapsOptions(aerial=aerial, map=maps)).plan([], BuildOptions()))
    with pytest.raises(ConfigError, match="both --aerial"):
        list(MapsBuilder(MapsOptions(aerial=aerial)).plan([], BuildOptions()))
    with pytest.raises(InputFileError, match="no {train,val}"):
        list(MapsBuilder().plan([aerial], BuildOptions()))


def test_resume_after_sigkill(tmp_path):
    archive = make_targz(published(tmp_path / "src", {"train": 8, "val": 4}), tmp_path / "maps.tar.gz")
    args = ["--source", archive, "--size", "16", "--format", "png", "--workers", "2", "--no-progress"]
    kill_mid_build_then_resume("maps", args, tmp_path / "killed", tmp_path / "clean")
