"""The inpainting builder on a generated Paris StreetView tree (real names, sizes and formats)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import kill_mid_build_then_resume
from p2ptools_datasets.inpainting import MEAN_FILL, InpaintingBuilder, InpaintingOptions, center_hole

from p2ptools.buildkit import BuildOptions
from p2ptools.imageio import encode_image, read_image
from p2ptools.pairs import load_manifest, read_pair

SIZE = 32
TRAIN = ["48.842502_2.344968_90_-004.JPG", "48.842502_2.344968_180_-004.JPG", "48.853114_2.339651_270_-004.JPG", "48.860221_2.352801_0_-004.JPG"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))


def paris(root: Path) -> Path:
    """paris_train_original/*.JPG (936x537) and paris_eval/paris_eval_gt/NNN_im.png (227x227)."""
    rng = np.random.default_rng(1)
    (root / "paris_train_original").mkdir(parents=True)
    (root / "paris_eval" / "paris_eval_gt").mkdir(parents=True)
    yy, xx = np.mgrid[0:537, 0:936]
    for i, name in enumerate(TRAIN):
        img = np.stack([(xx * (i + 1)) % 256, yy % 256, (xx + yy) % 256], 2).astype(np.uint8)
        (root / "paris_train_original" / name).write_bytes(encode_image(img, "jpg", quality=92))
    for i in range(1, 4):
        img = rng.integers(0, 256, (227, 227, 3), dtype=np.uint8)
        (root / "paris_eval" / "paris_eval_gt" / f"{i:03d}_im.png").write_bytes(encode_image(img, "png"))
    return root


def expected_b(path: Path) -> np.ndarray:
    """Short side to SIZE with INTER_AREA, centred crop, computed here with explicit numbers."""
    img = read_image(path)
    h, w = img.shape[:2]
    if (h, w) == (537, 936):
        small = cv2.resize(img, (56, 32), interpolation=cv2.INTER_AREA)  # 936 * 32 / 537 = 55.8
        return small[:, 12:44]
    return cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)


def build(src, out, seed=0, **opts):
    return InpaintingBuilder(InpaintingOptions(**opts)).build([src], out, BuildOptions(size=SIZE, seed=seed, workers=1, format="png"), progress=False)


def test_center_hole_is_pix2pix_box_at_256():
    mask = center_hole(256)
    assert mask[64:192, 64:192].min() == 255 and int((mask > 0).sum()) == 128 * 128
    assert mask[63, 64] == mask[64, 63] == mask[192, 100] == mask[100, 192] == 0


@pytest.mark.parametrize("fill, value", [("white", (255, 255, 255)), ("mean", MEAN_FILL)])
def test_paris_layout_center_hole(tmp_path, fill, value):
    src = paris(tmp_path / "src")
    manifest = build(src, tmp_path / "out", fill=fill, val_fraction=0.25)
    assert manifest.counts == {"train": 3, "val": 1, "test": 3}
    assert sorted(p.name for p in manifest.pairs if p.split == "test") == ["001_im", "002_im", "003_im"]
    assert {p.name for p in manifest.pairs if p.split != "test"} == {Path(n).stem for n in TRAIN}
    inside = np.zeros((SIZE, SIZE), bool)
    inside[8:24, 8:24] = True  # [size/4, 3 size/4)
    for rec in manifest.pairs:
        a, b = read_pair(tmp_path / "out" / rec.file)
        (source,) = rec.sources
        np.testing.assert_array_equal(b, expected_b(src / source))
        assert (a[inside] == value).all()
        np.testing.assert_array_equal(a[~inside], b[~inside])
        mask = read_image(tmp_path / "out" / rec.extras["masks"]["file"], mode="gray")
        np.testing.assert_array_equal(mask, np.where(inside, 255, 0))
        assert rec.extras["masks"]["file"] == f"masks/{rec.split}/{rec.name}.png"
    assert manifest.extras["split_rule"].startswith("paris_eval_gt -> test")


def test_random_holes_deterministic_for_the_seed(tmp_path):
    src = paris(tmp_path / "src")
    runs = [build(src, tmp_path / f"o{i}", seed=seed, hole="random", fill="noise", max_holes=3) for i, seed in enumerate((5, 5, 6))]
    masks = [{p.name: p.extras["masks"]["sha256"] for p in m.pairs} for m in runs]
    assert masks[0] == masks[1]
    assert [p.sha256 for p in runs[0].pairs] == [p.sha256 for p in runs[1].pairs]
    assert masks[0] != masks[2]
    areas = []
    for rec in runs[0].pairs:
        a, b = read_pair(tmp_path / "o0" / rec.file)
        mask = read_image(tmp_path / "o0" / rec.extras["masks"]["file"], mode="gray") > 0
        areas.append(mask.mean())
        np.testing.assert_array_equal(a[~mask], b[~mask])
        assert np.abs(a[mask].astype(int) - b[mask]).mean() > 30  # noise, not the photo
        # every hole is a union of rectangles with sides in [size/8, size/2]
        n, _lab, stats, _c = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
        assert 2 <= n <= 4 and stats[1:, cv2.CC_STAT_WIDTH].min() >= 4
    assert len(set(areas)) > 1


def test_generic_folder_split_and_errors(tmp_path, cli):
    photos = tmp_path / "photos"
    for i in range(10):
        (photos / ("a" if i % 2 else "b")).mkdir(parents=True, exist_ok=True)
        img = np.full((20 + i, 40, 3), i * 20, np.uint8)
        (photos / ("a" if i % 2 else "b") / f"img{i}.png").write_bytes(encode_image(img, "png"))
    (photos / "b" / "img1.png").write_bytes(encode_image(np.zeros((24, 24, 3), np.uint8), "png"))  # stem clash
    res = cli("make-dataset", "inpainting", "--source", photos, "--out", tmp_path / "out", "--size", "16", "--val-fraction", "0.2", "--test-fraction", "0.1", "--no-progress")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "out")
    assert manifest.counts == {"train": 8, "val": 2, "test": 1}
    assert {"a__img1", "b__img1", "img0"} <= {p.name for p in manifest.pairs}
    assert manifest.file_format == "jpg" and manifest.image_size == [16, 16]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    res = cli("make-dataset", "inpainting", "--source", empty, "--out", tmp_path / "o2", "--no-progress")
    assert res.code == 1 and res.stderr.strip() == f"error: {empty}: no images found (expected a folder or archive of photos)"

    bad = photos / "a" / "img3.png"
    bad.write_bytes(bad.read_bytes()[:60])
    res = cli("make-dataset", "inpainting", "--source", photos, "--out", tmp_path / "o3", "--size", "16", "--workers", "1", "--no-progress")
    assert res.code == 1 and f"{bad}: truncated PNG" in res.stderr


def test_resume_after_sigkill(tmp_path):
    src = paris(tmp_path / "src")
    args = ["--source", src, "--size", str(SIZE), "--format", "png", "--workers", "1", "--hole", "random", "--no-progress"]
    kill_mid_build_then_resume("inpainting", args, tmp_path / "killed", tmp_path / "clean", kill_after=3)
