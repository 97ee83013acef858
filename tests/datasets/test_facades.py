"""The facades builder on generated CMP Facade DB zips/folders (palette PNG labels 1..12)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import kill_mid_build_then_resume
from p2ptools_datasets.facades import FacadesBuilder, FacadesOptions, parse_label_names, split_counts
from PIL import Image

from p2ptools.buildkit import BuildOptions
from p2ptools.errors import InputFileError, P2PError
from p2ptools.imageio import read_image
from p2ptools.pairs import load_manifest, read_pair

NAMES = ["background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco", "molding", "pillar", "shop"]
LABEL_NAMES_TXT = "".join(f"{i + 1} {n}\n" for i, n in enumerate(NAMES))
# a palette unlike any standard one: index v -> (v * 20, 255 - v * 20, (v * 37) % 256)
PALETTE = [(v * 20 % 256, (255 - v * 20) % 256, v * 37 % 256) for v in range(256)]


def label_image(seed: int, h: int = 40, w: int = 32) -> np.ndarray:
    lab = np.full((h, w), 2, np.uint8)  # facade
    lab[:4] = 1  # background
    lab[8:16, 4 + seed : 12 + seed] = 3  # window
    lab[28:, 12:20] = 4  # door
    lab[-2:, :] = 12  # shop
    return lab


def write_palette_png(path: Path, indices: np.ndarray) -> None:
    img = Image.fromarray(indices, "P")
    img.putpalette([c for rgb in PALETTE for c in rgb])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_part(root: Path, part: str, numbers: list[int], labels: dict[str, np.ndarray] | None = None) -> Path:
    rng = np.random.default_rng(len(numbers))
    letter = "b" if part == "base" else "x"
    for k, n in enumerate(numbers):
        stem = f"cmp_{letter}{n:04d}"
        folder = root / part
        folder.mkdir(parents=True, exist_ok=True)
        lab = (labels or {}).get(stem, label_image(k % 4))
        photo = rng.integers(0, 256, (*lab.shape, 3), dtype=np.uint8)
        Image.fromarray(photo).save(folder / f"{stem}.jpg", quality=95)
        write_palette_png(folder / f"{stem}.png", lab)
        (folder / f"{stem}.xml").write_text("<annotation><object><points><x>0.1</x></points><label>3</label><labelname>window</labelname></object></annotation>")
    if part == "base":
        (root / "label_names.txt").write_text(LABEL_NAMES_TXT)
        (root / "readme.txt").write_text("CMP facade database (generated)")
    return root


def zip_folder(root: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    return dest


def test_split_counts_match_pix2pix():
    assert split_counts(606) == (400, 100, 106)
    assert split_counts(6) == (4, 1, 1)
    assert sum(split_counts(378)) == 378


def test_parse_label_names_forms():
    assert parse_label_names("1 background\n2 facade\n") == {1: "background", 2: "facade"}
    assert parse_label_names("background 1\nfacade 2\n") == {1: "background", 2: "facade"}
    assert parse_label_names("# classes\nbackground\nfacade\n\n") == {1: "background", 2: "facade"}
    with pytest.raises(InputFileError, match="listed twice"):
        parse_label_names("1 a\n1 b\n")


def test_build_base_zip_and_extended_folder(tmp_path):
    base = zip_folder(make_part(tmp_path / "b", "base", [1, 2, 3, 4]), tmp_path / "CMP_facade_DB_base.zip")
    ext = make_part(tmp_path / "e", "extended", [3, 10])
    out = tmp_path / "out"
    builder = FacadesBuilder(FacadesOptions(class_index=True))
    manifest = builder.build([base, ext], out, BuildOptions(size=16, format="png", workers=2, seed=3), progress=False)
    assert manifest.counts == {"train": 4, "val": 1, "test": 1}
    names = sorted(p.name for p in manifest.pairs)
    assert names == ["cmp_b0001", "cmp_b0002", "cmp_b0003", "cmp_b0004", "cmp_x0003", "cmp_x0010"]

    rec = {p.name: p for p in manifest.pairs}["cmp_x0010"]
    assert rec.sources == ["extended/cmp_x0010.jpg", "extended/cmp_x0010.png"]
    a, b = read_pair(out / rec.file)
    lab = label_image(1)
    rows = np.floor(np.arange(16) * 40 / 16).astype(int)
    cols = np.floor(np.arange(16) * 32 / 16).astype(int)
    small = lab[rows][:, cols]
    np.testing.assert_array_equal(b, np.array(PALETTE, np.uint8)[small])  # the PNG's own palette
    np.testing.assert_array_equal(read_image(out / rec.extras["labels"]["file"], mode="gray"), small)
    photo = read_image(ext / "extended/cmp_x0010.jpg")
    np.testing.assert_array_equal(a, cv2.resize(photo, (16, 16), interpolation=cv2.INTER_AREA))

    extras = load_manifest(out).extras
    assert extras["classes"]["3"] == "window" and extras["classes"]["12"] == "shop"
    assert extras["parts"] == ["base", "extended"]


def test_split_depends_on_seed_only(tmp_path):
    src = make_part(tmp_path / "b", "base", [1, 2, 3, 4, 5, 6, 7, 8])
    splits = []
    for seed in (0, 0, 1):
        jobs = list(FacadesBuilder().plan([src], BuildOptions(seed=seed)))
        splits.append({j.name: j.split for j in jobs})
    assert splits[0] == splits[1]
    assert splits[0] != splits[2]
    assert sorted(splits[0].values()).count("train") == 5  # round(8 * 400 / 606)


def test_label_value_outside_the_table_and_skip_bad(tmp_path):
    bad = label_image(0)
    bad[5, 5] = 13
    src = make_part(tmp_path / "b", "base", [1, 2, 3], labels={"cmp_b0002": bad})
    with pytest.raises(P2PError, match=r"cmp_b0002\.png: label values outside the class table 1\.\.12.*: 13"):
        FacadesBuilder().build([src], tmp_path / "o", BuildOptions(size=16, workers=1), progress=False)
    manifest = FacadesBuilder().build([src], tmp_path / "o", BuildOptions(size=16, workers=1, skip_bad=True), progress=False)
    assert [s.name for s in manifest.skipped] == ["cmp_b0002"]
    assert len(manifest.pairs) == 2


def test_photo_without_label_non_palette_label_and_no_label_names(tmp_path):
    src = make_part(tmp_path / "b", "base", [1, 2])
    (src / "base/cmp_b0002.png").unlink()
    with pytest.raises(P2PError, match=r"cmp_b0002\.jpg: photo without its label"):
        FacadesBuilder().build([src], tmp_path / "o1", BuildOptions(size=16, workers=1), progress=False)
    Image.fromarray(label_image(0), "L").save(src / "base/cmp_b0002.png")
    with pytest.raises(P2PError, match=r"cmp_b0002\.png: expected a palette \(mode P\) label PNG, got mode L"):
        FacadesBuilder().build([src], tmp_path / "o2", BuildOptions(size=16, workers=1), progress=False)
    (src / "label_names.txt").unlink()
    with pytest.raises(InputFileError, match="no label_names.txt"):
        FacadesBuilder().build([src], tmp_path / "o3", BuildOptions(size=16), progress=False)
    with pytest.raises(InputFileError, match="no base/cmp_bNNNN.jpg"):
        FacadesBuilder().build([tmp_path / "o1"], tmp_path / "o4", BuildOptions(size=16), progress=False)


def test_resume_after_sigkill(tmp_path):
    base = zip_folder(make_part(tmp_path / "b", "base", list(range(1, 13))), tmp_path / "CMP_facade_DB_base.zip")
    args = ["--source", base, "--size", "16", "--format", "png", "--workers", "2", "--class-index", "--no-progress"]
    kill_mid_build_then_resume("facades", args, tmp_path / "killed", tmp_path / "clean")
