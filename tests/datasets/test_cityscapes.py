"""The cityscapes builder on generated trees and zips in the real Cityscapes layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import build_then_sigkill
from p2ptools_datasets.cityscapes import CityscapesBuilder, CityscapesOptions
from PIL import Image

from p2ptools.buildkit import BuildOptions
from p2ptools.errors import InputFileError, P2PError
from p2ptools.imageio import read_image
from p2ptools.pairs import load_manifest, read_pair, verify_dataset

W, H = 64, 32
# labelId -> color, written out by hand from the official table (GUIDE.md section 5)
COLORS = {7: (128, 64, 128), 11: (70, 70, 70), 23: (70, 130, 180), 26: (0, 0, 142), 0: (0, 0, 0), 4: (0, 0, 0)}
TRAIN_IDS = {7: 0, 11: 2, 23: 10, 26: 13, 0: 255, 4: 255}
FRAMES = [
    ("train", "aachen", "aachen_000000_000019"),
    ("train", "aachen", "aachen_000001_000019"),
    ("train", "bochum", "bochum_000000_001097"),
    ("val", "frankfurt", "frankfurt_000000_000294"),
    ("test", "berlin", "berlin_000000_000019"),
]


def label_ids(seed: int) -> np.ndarray:
    """A labelIds image: sky on top, buildings, a car block, road below, a void corner."""
    ids = np.full((H, W), 23, np.uint8)
    ids[8:, :] = 11
    ids[16:, :] = 7
    ids[12:24, 8 + seed * 4 : 40 + seed * 4] = 26
    ids[28:, 56:] = 0
    ids[0:4, 0:4] = 4
    return ids


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if image.ndim == 2 else ("RGBA" if image.shape[2] == 4 else "RGB")
    Image.fromarray(image, mode).save(path)


def make_tree(root: Path, frames=FRAMES, labels=None) -> Path:
    """leftImg8bit/ and gtFine/ trees (labelIds mode L, color RGBA, polygons json) under root."""
    rng = np.random.default_rng(0)
    for i, (split, city, stem) in enumerate(frames):
        photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", photo)
        ids = np.zeros((H, W), np.uint8) if split == "test" else (labels or {}).get(stem, label_ids(i % 3))
        gt = root / "gtFine" / split / city
        write_png(gt / f"{stem}_gtFine_labelIds.png", ids)
        color = np.zeros((H, W, 4), np.uint8)
        color[..., 3] = 255
        for lid, c in COLORS.items():
            color[ids == lid, :3] = c
        write_png(gt / f"{stem}_gtFine_color.png", color)
        (gt / f"{stem}_gtFine_polygons.json").write_text("{}")
    return root


def zip_tree(root: Path, top: str, dest: Path) -> Path:
    """Zip ``root/top`` the way the official archives are laid out (top folder at the root)."""
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("README", "generated")
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return dest


@pytest.fixture
def zips(tmp_path):
    tree = make_tree(tmp_path / "tree")
    return tree, [zip_tree(tree, "leftImg8bit", tmp_path / "leftImg8bit_trainvaltest.zip"), zip_tree(tree, "gtFine", tmp_path / "gtFine_trainvaltest.zip")]


def expected_ids(ids: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize computed independently: source pixel floor(i * scale)."""
    rows = np.floor(np.arange(size) * ids.shape[0] / size).astype(int)
    cols = np.floor(np.arange(size) * ids.shape[1] / size).astype(int)
    return ids[rows][:, cols]


def test_build_from_zips_pixels_names_splits_manifest(zips, tmp_path):
    tree, sources = zips
    out = tmp_path / "out"
    manifest = CityscapesBuilder().build(sources, out, BuildOptions(size=16, format="png", workers=2), progress=False)
    assert manifest.counts == {"train": 3, "val": 1}
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"{s}.png" for _, _, s in FRAMES[:3]]
    assert [p.name for p in (out / "val").iterdir()] == ["frankfurt_000000_000294.png"]
    assert not (out / "test").exists()
    assert verify_dataset(out).ok

    for i, (split, city, stem) in enumerate(FRAMES[:4]):
        a, b = read_pair(out / split / f"{stem}.png")
        ids = expected_ids(label_ids(i % 3), 16)
        want = np.array([COLORS[v] for v in ids.ravel()], np.uint8).reshape(16, 16, 3)
        np.testing.assert_array_equal(b, want)
        train_ids = read_image(out / "labels" / split / f"{stem}.png", mode="gray")
        np.testing.assert_array_equal(train_ids, np.vectorize(TRAIN_IDS.get)(ids).astype(np.uint8))
        photo = read_image(tree / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        np.testing.assert_array_equal(a, cv2.resize(photo, (16, 16), interpolation=cv2.INTER_AREA))
    # a pixel whose labelId is 26 (car) is (0, 0, 142) in B
    _, b = read_pair(out / "train" / "aachen_000000_000019.png")
    assert tuple(b[8, 4]) == (0, 0, 142)
    # B holds class colors only: no blended colors at boundaries
    assert {tuple(c) for c in b.reshape(-1, 3)} <= set(COLORS.values())

    rec = {p.name: p for p in manifest.pairs}["bochum_000000_001097"]
    assert rec.sources == [
        "leftImg8bit/train/bochum/bochum_000000_001097_leftImg8bit.png",
        "gtFine/train/bochum/bochum_000000_001097_gtFine_labelIds.png",
    ]
    assert rec.extras["labels"]["file"] == "labels/train/bochum_000000_001097.png"
    loaded = load_manifest(out)
    assert loaded.extras["classes"]["label_ids"][13] == 26 and loaded.extras["classes"]["colors"][13] == [0, 0, 142]
    assert loaded.extras["skipped_test_frames"] == 1
    assert loaded.image_size == [16, 16]


def test_folder_holding_both_trees_gives_the_same_pairs(zips, tmp_path):
    tree, sources = zips
    opts = BuildOptions(size=16, format="png", workers=1)
    CityscapesBuilder().build(sources, tmp_path / "z", opts, progress=False)
    CityscapesBuilder().build([tree], tmp_path / "f", opts, progress=False)
    for path in (tmp_path / "z").rglob("*.png"):
        assert path.read_bytes() == (tmp_path / "f" / path.relative_to(tmp_path / "z")).read_bytes()


def test_color_route_blends_like_the_reference(zips, tmp_path):
    tree, sources = zips
    out = tmp_path / "c"
    manifest = CityscapesBuilder(CityscapesOptions(label_source="color")).build(sources, out, BuildOptions(size=16, format="png", workers=1), progress=False)
    stem = "aachen_000000_000019"
    _, b = read_pair(out / "train" / f"{stem}.png")
    color = Image.open(tree / "gtFine/train/aachen" / f"{stem}_gtFine_color.png").convert("RGB")
    np.testing.assert_array_equal(b, np.asarray(color.resize((16, 16), Image.BICUBIC)))
    assert len({tuple(c) for c in b.reshape(-1, 3)} - set(COLORS.values())) > 0  # blended colors
    assert manifest.pairs[0].sources[1].endswith("_gtFine_color.png")


def test_label_values_outside_the_table(tmp_path):
    bad = label_ids(0)
    bad[0, 10], bad[1, 10] = 40, 200
    tree = make_tree(tmp_path / "t", labels={"aachen_000001_000019": bad})
    with pytest.raises(P2PError, match=r"aachen_000001_000019_gtFine_labelIds\.png: label ids outside .*0\.\.33: 40, 200"):
        CityscapesBuilder().build([tree], tmp_path / "o", BuildOptions(size=16, workers=1), progress=False)
    manifest = CityscapesBuilder().build([tree], tmp_path / "o", BuildOptions(size=16, workers=1, skip_bad=True), progress=False)
    assert [s.name for s in manifest.skipped] == ["aachen_000001_000019"]
    assert "40, 200" in manifest.skipped[0].error
    assert manifest.counts == {"train": 2, "val": 1}


def test_photo_without_label_and_missing_trees(tmp_path):
    tree = make_tree(tmp_path / "t")
    (tree / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png").unlink()
    with pytest.raises(P2PError, match=r"frankfurt_000000_000294_leftImg8bit\.png: photo without its label: gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds\.png"):
        CityscapesBuilder().build([tree], tmp_path / "o", BuildOptions(size=16, workers=1), progress=False)
    with pytest.raises(InputFileError, match="no gtFine/"):
        CityscapesBuilder().build([tree / "leftImg8bit"], tmp_path / "o2", BuildOptions(size=16), progress=False)
    with pytest.raises(InputFileError, match="no leftImg8bit/"):
        CityscapesBuilder().build([tree / "gtFine"], tmp_path / "o3", BuildOptions(size=16), progress=False)


def test_truncated_photo_names_the_file(tmp_path):
    tree = make_tree(tmp_path / "t")
    photo = tree / "leftImg8bit/train/bochum/bochum_000000_001097_leftImg8bit.png"
    photo.write_bytes(photo.read_bytes()[:-40])
    with pytest.raises(P2PError, match=r"bochum_000000_001097_leftImg8bit\.png: truncated PNG"):
        CityscapesBuilder().build([tree], tmp_path / "o", BuildOptions(size=16, workers=1), progress=False)


def test_cli_download_explains_the_login(cli, tmp_path):
    result = cli("make-dataset", "cityscapes", "--download", "--download-dir", tmp_path / "dl", "--out", tmp_path / "o")
    assert result.code == 1
    assert "cityscapes-dataset.com" in result.stderr and "gtFine_trainvaltest.zip" in result.stderr
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir())


def test_the_two_top_folders_as_sources(tmp_path):
    tree = make_tree(tmp_path / "t")
    manifest = CityscapesBuilder().build([tree / "leftImg8bit", tree / "gtFine"], tmp_path / "o", BuildOptions(size=16, workers=1), progress=False)
    assert manifest.counts == {"train": 3, "val": 1}


def test_resume_after_sigkill_matches_an_uninterrupted_build(tmp_path):
    """SIGKILL a CLI build once some pairs exist; the rerun completes it byte for byte."""
    import subprocess
    import sys

    frames = [("train", "aachen", f"aachen_{i:06d}_000019") for i in range(60)]
    rng = np.random.default_rng(1)
    root = tmp_path / "src"
    for i, (split, city, stem) in enumerate(frames):  # large enough that the build takes a few seconds
        write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8))
        write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", np.kron(label_ids(i % 3), np.ones((16, 16), np.uint8)))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "p2ptools", "make-dataset", "cityscapes", "--source", str(root), "--out", str(out),
                "--size", "32", "--workers", "2", "--no-progress"]  # fmt: skip

    out = tmp_path / "killed"
    journal = out / ".p2ptools-journal.jsonl"
    build_then_sigkill(command(out), out, pairs=5)  # the CLI and its worker processes
    done = len(list((out / "train").glob("*.png")))
    assert 5 <= done < len(frames) and not (out / "manifest.json").exists()
    (out / "train" / ".tmp-killed-mid-write.png").write_bytes(b"\x89PNG half a file")  # as a kill mid-write leaves

    rerun = subprocess.run(command(out), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    clean = tmp_path / "clean"
    assert subprocess.run(command(clean), capture_output=True, timeout=120).returncode == 0

    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(files) == 2 * len(frames) + 2  # pairs, label PNGs, manifest, ownership record
    for rel in files:
        assert (out / rel).read_bytes() == (clean / rel).read_bytes(), rel
    assert not list(out.rglob(".tmp-*")) and not journal.exists()


def test_parallel_build_after_the_caller_used_opencv_threads(tmp_path):
    """Forking workers while the caller's OpenCV thread pool is alive used to deadlock them."""
    import subprocess
    import sys
    import textwrap

    tree = make_tree(tmp_path / "t")
    code = textwrap.dedent(f"""
        import cv2, numpy as np
        from p2ptools.buildkit import BuildOptions
        from p2ptools_datasets.cityscapes import CityscapesBuilder
        big = np.zeros((1024, 2048, 3), np.uint8)
        for _ in range(3):
            cv2.resize(big, (256, 256), interpolation=cv2.INTER_CUBIC)  # starts OpenCV's thread pool
        m = CityscapesBuilder().build([{str(tree)!r}], {str(tmp_path / "o")!r}, BuildOptions(size=16, workers=2), progress=False)
        print(len(m.pairs))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4"


def test_decode_photo_equals_decode_then_resize():
    from p2ptools_datasets.cityscapes import decode_photo, resize_photo

    from p2ptools.imageio import decode_image, encode_image

    photo = np.random.default_rng(3).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    data = encode_image(photo, "png")
    for size in (16, 100):  # shrinking (area) and enlarging (bicubic)
        np.testing.assert_array_equal(decode_photo(data, "p.png", size), resize_photo(decode_image(data, "p.png"), size))
    with pytest.raises(InputFileError, match="p.png: empty file"):
        decode_photo(b"", "p.png", 16)
    with pytest.raises(InputFileError, match="p.png: not a readable image"):
        decode_photo(b"not an image at all", "p.png", 16)


def add_instance_ids(root: Path, frames=FRAMES) -> dict[str, np.ndarray]:
    """gtFine_instanceIds 16-bit PNGs: the label id for stuff, 26000 + k for the k-th car."""
    written = {}
    for i, (split, city, stem) in enumerate(frames):
        if split == "test":
            continue
        ids = label_ids(i % 3).astype(np.uint16)
        inst = ids.copy()
        inst[ids == 26] = 26000
        inst[12:24, 8 + (i % 3) * 4 : 20 + (i % 3) * 4] = 26001  # a second car beside the first
        path = root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png"
        assert cv2.imwrite(str(path), inst)
        written[stem] = inst
    return written


def test_ids_extras_write_label_and_instance_ids_recorded_in_the_manifest(tmp_path):
    tree = make_tree(tmp_path / "tree")
    instances = add_instance_ids(tree)
    out = tmp_path / "out"
    options = CityscapesOptions(ids_extras=True, aspect="keep")
    manifest = CityscapesBuilder(options).build([tree], out, BuildOptions(size=16, format="png", workers=1), progress=False)
    for i, (split, _, stem) in enumerate(FRAMES[:4]):
        a, b = read_pair(out / split / f"{stem}.png")
        assert a.shape == b.shape == (16, 32, 3)  # aspect kept: 64x32 -> 32x16
        ids = read_image(out / "label_ids" / split / f"{stem}.png", mode="unchanged")
        rows = np.floor(np.arange(16) * H / 16).astype(int)
        cols = np.floor(np.arange(32) * W / 32).astype(int)
        np.testing.assert_array_equal(ids, label_ids(i % 3)[rows][:, cols])
        inst = read_image(out / "instance_ids" / split / f"{stem}.png", mode="unchanged")
        assert inst.dtype == np.uint16
        np.testing.assert_array_equal(inst, instances[stem][rows][:, cols])
        assert {26000, 26001} <= set(np.unique(inst).tolist())
    rec = {p.name: p for p in manifest.pairs}["bochum_000000_001097"]
    assert rec.extras["label_ids"]["file"] == "label_ids/train/bochum_000000_001097.png"
    assert rec.extras["instance_ids"]["file"] == "instance_ids/train/bochum_000000_001097.png"
    assert rec.sources[-1] == "gtFine/train/bochum/bochum_000000_001097_gtFine_instanceIds.png"
    loaded = load_manifest(out)
    assert loaded.extras["label_nc"] == 35 and "instance_ids" in loaded.extras and loaded.extras["aspect"] == "keep"
    assert verify_dataset(out).ok


def test_ids_extras_without_instance_file_is_an_error_naming_it(tmp_path):
    tree = make_tree(tmp_path / "tree")
    with pytest.raises(P2PError, match="aachen_000000_000019.*gtFine_instanceIds.png is not in the source"):
        CityscapesBuilder(CityscapesOptions(ids_extras=True)).build([tree], tmp_path / "out", BuildOptions(size=16, format="png", workers=1), progress=False)
    assert not (tmp_path / "out" / "train").exists() or not any((tmp_path / "out" / "train").iterdir())
