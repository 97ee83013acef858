"""Issue 9, make-dataset side: nothing p2ptools did not write is deleted, nothing it wrote is removed
before its replacement is complete; oversized images are bad items; symlink loops are bad items.

Each test reproduces one reported case (numbered as in the issue) through the real CLI."""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import HttpServer, assert_one_line_error, jpeg_bytes, png_claiming, tar_gz, tree_bytes

from p2ptools.pairs import load_manifest


def _img(rng, h=16, w=16):
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def ab(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for side in "AB":
            (tmp_path / side / split).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(tmp_path / side / split / f"{i}.png"), _img(rng))
    return tmp_path


def _combine(cli, a: Path, b: Path, out: Path, *extra, env: dict[str, str] | None = None):
    return cli("make-dataset", "combine", "--source-a", a, "--source-b", b, "--out", out, "--workers", "1", "--no-progress", *extra,
               env=env)  # fmt: skip



def _user_folder(path: Path) -> dict[str, bytes]:
    """A folder a user owns: a thesis, photos, and train/ val/ folders of their own."""
    for rel, data in (("thesis.tex", b"\\documentclass{article}"), ("photos/p1.jpg", jpeg_bytes(1)),
                      ("train/mine.png", b"not ours"), ("val/notes.txt", b"keep me")):  # fmt: skip
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return tree_bytes(path)



# -- case 1: make-dataset maps --prebuilt --overwrite --out USERDIR -------------------------------


@pytest.fixture
def maps_server():
    server = HttpServer()
    server.files["/maps.tar.gz"] = tar_gz([(tarfile.TarInfo(f"maps/train/{i}.jpg"), jpeg_bytes(i)) for i in (1, 2, 3)])
    yield server
    server.close()


def test_case1_prebuilt_overwrite_never_deletes_a_users_folder(maps_server, tmp_path, cli):
    user = tmp_path / "user"
    before = _user_folder(user)
    bad_dl = tmp_path / "bad-dl"
    bad_dl.mkdir()
    (bad_dl / "maps.tar.gz").write_bytes(b"this is no archive")
    env = {"P2PTOOLS_DOWNLOAD_BASE_URL": maps_server.url}
    for dl in (bad_dl, tmp_path / "dl"):  # a bad archive, then a good one: both refused before any deletion
        res = cli("make-dataset", "maps", "--prebuilt", "--overwrite", "--download-dir", dl, "--out", user, env=env)
        assert_one_line_error(res, f"--out {user}", "holds no p2ptools dataset", "even with --overwrite")
        assert tree_bytes(user) == before
    assert maps_server.ranges == []  # refused before downloading anything


def test_case1_prebuilt_overwrite_keeps_the_old_dataset_until_the_new_one_is_complete(maps_server, tmp_path, cli):
    env = {"P2PTOOLS_DOWNLOAD_BASE_URL": maps_server.url}
    out = tmp_path / "maps"
    assert cli("make-dataset", "maps", "--prebuilt", "--download-dir", tmp_path / "dl", "--out", out, env=env).code == 0
    before = tree_bytes(out)
    bad_dl = tmp_path / "bad-dl"
    bad_dl.mkdir()
    (bad_dl / "maps.tar.gz").write_bytes(b"\x1f\x8b truncated gzip")
    res = cli("make-dataset", "maps", "--prebuilt", "--overwrite", "--download-dir", bad_dl, "--out", out, env=env)
    assert_one_line_error(res, str(bad_dl / "maps.tar.gz"), "cannot read archive")
    assert tree_bytes(out) == before  # the old dataset is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad-dl", "dl", "maps"]  # no staging folder or lock left
    (out / "train" / "mine.txt").write_text("a user's file dropped into our dataset")
    res = cli("make-dataset", "maps", "--prebuilt", "--overwrite", "--download-dir", tmp_path / "dl", "--out", out, env=env)
    assert_one_line_error(res, "also holds files p2ptools did not write (train/mine.txt)")
    assert (out / "train" / "mine.txt").read_text().startswith("a user's")


# -- case 2: make-dataset combine --overwrite ------------------------------------------------------


def test_case2_combine_overwrite_refuses_a_foreign_folder_before_touching_it(ab, tmp_path, cli):
    user = tmp_path / "user"
    before = _user_folder(user)
    res = _combine(cli, ab / "A", ab / "B", user, "--overwrite")
    assert_one_line_error(res, f"--out {user}", "holds no p2ptools dataset")
    assert tree_bytes(user) == before


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_case2_combine_out_overlapping_a_source_is_refused(ab, cli, where):
    sources = tree_bytes(ab / "A")
    out = {"equal": ab / "A", "inside": ab / "A" / "train" / "out", "containing": ab}[where]
    res = _combine(cli, ab / "A", ab / "B", out, "--overwrite")
    word = {"equal": "is the input", "inside": "is inside the input", "containing": "contains the input"}[where]
    assert_one_line_error(res, f"--out {out}", word, str(ab / "A"))
    assert tree_bytes(ab / "A") == sources


def test_case2_mistyped_source_keeps_the_good_dataset(ab, tmp_path, cli):
    out = tmp_path / "ds"
    assert _combine(cli, ab / "A", ab / "B", out).code == 0
    before = tree_bytes(out)
    res = _combine(cli, ab / "A", ab / "Bee", out, "--overwrite")
    assert_one_line_error(res, str(ab / "Bee"), "no such folder")
    assert tree_bytes(out) == before


def test_case2_a_failed_rebuild_leaves_the_old_dataset_readable(ab, tmp_path, cli):
    out = tmp_path / "ds"
    assert _combine(cli, ab / "A", ab / "B", out).code == 0
    before = tree_bytes(out)
    (ab / "B" / "val" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the rebuild meets a bad input half-way
    res = _combine(cli, ab / "A", ab / "B", out, "--overwrite", "--quality", "80")
    assert_one_line_error(res, str(ab / "B" / "val" / "1.png"))
    assert tree_bytes(out) == before
    # the unfinished replacement waits beside it, to be resumed by the same command
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".ds.p2ptools-new"]
    (ab / "B" / "val" / "1.png").write_bytes(cv2.imencode(".png", _img(np.random.default_rng(5)))[1].tobytes())
    assert _combine(cli, ab / "A", ab / "B", out, "--overwrite", "--quality", "80").code == 0
    assert load_manifest(out).counts == {"train": 3, "val": 2} and tree_bytes(out) != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # swapped in: no staging, no lock
    (out / "val" / "mine.png").write_bytes(b"a user's file")
    res = _combine(cli, ab / "A", ab / "B", out, "--overwrite")
    assert_one_line_error(res, "also holds files p2ptools did not write (val/mine.png)")
    assert (out / "val" / "mine.png").read_bytes() == b"a user's file"


# -- case 6: a header claiming 50000x50000 pixels ---------------------------------------------------


def test_case6_oversized_header_is_one_line_and_skippable(ab, tmp_path, cli):
    bomb = ab / "A" / "train" / "1.png"
    bomb.write_bytes(png_claiming(50000, 50000))
    res = _combine(cli, ab / "A", ab / "B", tmp_path / "o1")
    assert_one_line_error(res, str(bomb), "50000x50000 pixels is over the limit", "P2PTOOLS_MAX_PIXELS")
    assert not (tmp_path / "o1" / "manifest.json").exists() and not list((tmp_path / "o1").rglob(".tmp-*"))
    res = _combine(cli, ab / "A", ab / "B", tmp_path / "o2", "--skip-bad")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "o2")
    assert manifest.counts == {"train": 2, "val": 2}
    (skipped,) = manifest.skipped
    assert skipped.sources[0] == str(bomb) and "over the limit" in skipped.error


def test_case6_the_pixel_limit_is_configurable(ab, tmp_path, cli):
    res = _combine(cli, ab / "A", ab / "B", tmp_path / "o", env={"P2PTOOLS_MAX_PIXELS": "100"})
    assert_one_line_error(res, "16x16 pixels is over the limit of 100 pixels")
    res = _combine(cli, ab / "A", ab / "B", tmp_path / "o", env={"P2PTOOLS_MAX_PIXELS": "lots"})
    assert_one_line_error(res, "P2PTOOLS_MAX_PIXELS", "expected a whole number")
    assert _combine(cli, ab / "A", ab / "B", tmp_path / "o", env={"P2PTOOLS_MAX_PIXELS": "0"}).code == 0


# -- case 9: a symlink loop in a combine source ------------------------------------------------------


def test_case9_symlink_loop_is_a_bad_item(ab, tmp_path, cli):
    (ab / "A" / "train" / "loop.png").symlink_to(ab / "A" / "train" / "loop.png")
    (ab / "B" / "train" / "loop.png").symlink_to(ab / "B" / "train" / "loop.png")
    res = _combine(cli, ab / "A", ab / "B", tmp_path / "o1")
    assert_one_line_error(res, "loop.png")
    res = _combine(cli, ab / "A", ab / "B", tmp_path / "o2", "--skip-bad")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "o2")
    assert manifest.counts == {"train": 3, "val": 2} and [r.name for r in manifest.skipped] == ["loop"]
