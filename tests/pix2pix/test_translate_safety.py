"""Issue 9, translate side (case 4, and 6/7 for translate): outputs never overwrite inputs, name
collisions are refused naming both files, existing translations are replaced only with --overwrite
and only once the new ones are complete, oversized inputs are bad items, a full disk is one line."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from p2p_testutils import assert_one_line_error, png_claiming, tree_bytes  # noqa: E402
from test_reference_import import _imported_run  # noqa: E402

from p2ptools.imageio import read_image, write_image  # noqa: E402




@pytest.fixture
def run(tmp_path, cli) -> Path:
    return _imported_run(tmp_path, cli)


@pytest.fixture
def photos(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c"):
        write_image(tmp_path / "photos" / f"{name}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return tmp_path / "photos"


def _translate(cli, run, inp, out, *extra):
    return cli("translate", run, "--input", inp, "--output", out, "--no-progress", *extra)


def test_case4_output_equal_to_or_inside_the_input_is_refused(run, photos, cli):
    before = tree_bytes(photos)
    assert_one_line_error(_translate(cli, run, photos, photos), f"--output {photos}", "is the input")
    assert_one_line_error(_translate(cli, run, photos, photos / "out"), "is inside the input")
    assert_one_line_error(_translate(cli, run, photos / "a.png", photos), "contains the input")
    assert tree_bytes(photos) == before


def test_case4_two_inputs_with_one_output_name_are_refused_naming_both(run, photos, tmp_path, cli):
    write_image(photos / "a.jpg", np.zeros((64, 64, 3), np.uint8))
    res = _translate(cli, run, photos, tmp_path / "out")
    assert_one_line_error(res, str(photos / "a.jpg"), str(photos / "a.png"), "same name")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_case4_existing_translations_are_replaced_only_with_overwrite_and_only_when_complete(run, photos, tmp_path, cli):
    out = tmp_path / "out"
    assert _translate(cli, run, photos, out).code == 0
    before = tree_bytes(out)
    assert_one_line_error(_translate(cli, run, photos, out), "holds translations already", "--overwrite")
    assert tree_bytes(out) == before
    (photos / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the new translation fails part-way
    assert_one_line_error(_translate(cli, run, photos, out, "--overwrite"), str(photos / "b.png"))
    assert tree_bytes(out) == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    res = _translate(cli, run, photos, out, "--overwrite", "--skip-bad")
    assert res.code == 0, res.stderr
    info = json.loads((out / "translate.json").read_text())
    assert info["count"] == 2 and [Path(s["file"]).name for s in info["skipped"]] == ["b.png"]
    assert not (out / "b.png").exists() and (out / "a.png").read_bytes() == before["a.png"]  # the same run: the same output
    user = tmp_path / "user"
    (user / "mine.png").parent.mkdir()
    (user / "mine.png").write_bytes(b"a user's image")
    assert_one_line_error(_translate(cli, run, photos, user, "--overwrite"), f"--output {user}", "holds no p2ptools translation folder")
    assert (user / "mine.png").read_bytes() == b"a user's image"


def test_case6_translate_skips_an_oversized_image(run, photos, tmp_path, cli):
    (photos / "huge.png").write_bytes(png_claiming(50000, 50000))
    assert_one_line_error(_translate(cli, run, photos, tmp_path / "o1"), str(photos / "huge.png"), "50000x50000 pixels is over the limit")
    assert not (tmp_path / "o1").exists()
    res = _translate(cli, run, photos, tmp_path / "o2", "--skip-bad")
    assert res.code == 0, res.stderr
    (skipped,) = json.loads((tmp_path / "o2" / "translate.json").read_text())["skipped"]
    assert Path(skipped["file"]).name == "huge.png" and "over the limit" in skipped["error"]


def test_case7_full_disk_during_translate_is_one_line_and_leaves_nothing(run, photos, tmp_path, cli, monkeypatch):
    import p2ptools.imageio as imageio

    out = tmp_path / "out"
    assert _translate(cli, run, photos, out).code == 0
    before = tree_bytes(out)
    real_write, written = imageio._write_all, []

    def full_after_one(fd, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(1)
        return real_write(fd, data)

    monkeypatch.setattr(imageio, "_write_all", full_after_one)
    line = assert_one_line_error(_translate(cli, run, photos, tmp_path / "new"), "cannot write (No space left on device)")
    assert ".png" in line
    assert not (tmp_path / "new").exists()
    written.clear()
    assert_one_line_error(_translate(cli, run, photos, out, "--overwrite"), "cannot write (No space left on device)")
    assert tree_bytes(out) == before  # the old translations are still complete
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert read_image(out / "a.png").shape == (64, 64, 3)


def test_issue23_a_users_translate_json_does_not_make_the_folder_ours(run, photos, tmp_path, cli):
    user = tmp_path / "user"
    user.mkdir()
    (user / "translate.json").write_text(json.dumps({"count": 1}))
    (user / "holiday.png").write_bytes(b"a user's picture")  # named like a translation
    before = tree_bytes(user)
    assert_one_line_error(_translate(cli, run, photos, user, "--overwrite"), f"--output {user}", "holds no p2ptools translation folder")
    assert tree_bytes(user) == before


def test_issue23_overwrite_of_translations_refuses_a_png_p2ptools_did_not_write(run, photos, tmp_path, cli):
    out = tmp_path / "out"
    assert _translate(cli, run, photos, out).code == 0
    (out / "holiday.png").write_bytes(b"a user's picture")
    before = tree_bytes(out)
    assert_one_line_error(_translate(cli, run, photos, out, "--overwrite"), "also holds files p2ptools did not write (holiday.png)")
    assert tree_bytes(out) == before
    (out / "holiday.png").unlink()
    assert _translate(cli, run, photos, out, "--overwrite").code == 0
