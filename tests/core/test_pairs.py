import hashlib
from pathlib import Path

import numpy as np
import pytest

from p2ptools.errors import InputFileError
from p2ptools.imageio import write_image
from p2ptools.pairs import (
    Manifest,
    PairRecord,
    SkippedRecord,
    iter_split,
    join_pair,
    load_manifest,
    read_pair,
    split_pair,
    verify_dataset,
    write_pair,
)


def test_split_join_roundtrip_and_odd_width():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8), rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    a2, b2 = split_pair(join_pair(a, b))
    assert (a2 == a).all() and (b2 == b).all()
    with pytest.raises(InputFileError, match=r"odd\.png: odd width 7"):
        split_pair(np.zeros((4, 7, 3), np.uint8), "odd.png")
    with pytest.raises(InputFileError, match="A is 5x4 but B is 6x4"):
        join_pair(a, np.zeros((4, 6, 3), np.uint8))


def test_write_and_read_pair(tmp_path: Path):
    a = np.full((8, 8, 3), 10, np.uint8)
    b = np.full((8, 8, 3), 200, np.uint8)
    digest = write_pair(tmp_path / "train" / "x.png", a, b)
    assert digest == hashlib.sha256((tmp_path / "train" / "x.png").read_bytes()).hexdigest()
    ra, rb = read_pair(tmp_path / "train" / "x.png")
    assert (ra == a).all() and (rb == b).all()
    write_image(tmp_path / "train" / "odd.png", np.zeros((4, 9, 3), np.uint8))
    with pytest.raises(InputFileError, match="odd width 9"):
        read_pair(tmp_path / "train" / "odd.png")
    assert [p.name for p in iter_split(tmp_path, "train")] == ["odd.png", "x.png"]
    with pytest.raises(InputFileError, match="no such split folder"):
        list(iter_split(tmp_path, "val"))


def _dataset(root: Path) -> Manifest:
    records = []
    for i in range(3):
        rel = f"train/p{i}.png"
        digest = write_pair(root / rel, np.full((4, 4, 3), i, np.uint8), np.zeros((4, 4, 3), np.uint8))
        records.append(PairRecord("train", f"p{i}", rel, [f"src/{i}.jpg"], digest))
    manifest = Manifest({"name": "t", "version": "1"}, {"x": 1}, ["/src"], [4, 4], "png", records, [SkippedRecord("train", "bad", ["src/bad.jpg"], "broken")])
    manifest.write(root)
    return manifest


def test_manifest_roundtrip_and_verify(tmp_path: Path):
    manifest = _dataset(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.counts == {"train": 3} and loaded.pairs[1].sources == ["src/1.jpg"]
    assert loaded.skipped[0].error == "broken"
    assert verify_dataset(tmp_path).ok and verify_dataset(tmp_path).checked == 3
    # change one file, delete one, add an unlisted one
    write_pair(tmp_path / "train/p0.png", np.ones((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "train/p1.png").unlink()
    write_pair(tmp_path / "train/extra.png", np.ones((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    report = verify_dataset(tmp_path)
    assert report.changed == ["train/p0.png"] and report.missing == ["train/p1.png"] and report.unlisted == ["train/extra.png"]
    assert manifest.counts == {"train": 3}


def test_verify_cli(tmp_path: Path, cli):
    _dataset(tmp_path)
    ok = cli("datasets", "verify", tmp_path)
    assert ok.code == 0 and "OK, 3 files" in ok.stdout
    (tmp_path / "train/p2.png").write_bytes(b"x")
    bad = cli("datasets", "verify", tmp_path)
    assert bad.code == 1 and "changed (sha256 differs): train/p2.png" in bad.stdout
    assert bad.stderr.strip().count("\n") == 0  # one line
    missing = cli("datasets", "verify", tmp_path / "nothing")
    assert missing.code == 1 and "no manifest.json" in missing.stderr


def test_bad_manifest(tmp_path: Path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputFileError, match="manifest.json: not valid JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(InputFileError, match="unknown manifest format"):
        load_manifest(tmp_path)
