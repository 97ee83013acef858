"""The output contract's building blocks (p2ptools/outputs.py, cache.py): ownership, overlap, swap-in
and its recovery after a kill between the two renames, carrying a user's files over, the cache folder."""

from __future__ import annotations

import os

import pytest

from p2ptools.cache import cache_root, file_key
from p2ptools.errors import ConfigError
from p2ptools.outputs import (OutputKind, carry_over, check_folder_path, claim, folder_state, recover_swap, refuse_foreign,
                              refuse_overlap, refuse_unknown_entries, seal, staging_path, swap_in)  # fmt: skip

DATASET = OutputKind("dataset", ("manifest.json",))


def test_folder_state_and_refuse_foreign(tmp_path):
    assert folder_state(tmp_path / "none", DATASET) == "absent"
    (tmp_path / "empty").mkdir()
    assert folder_state(tmp_path / "empty", DATASET) == "empty"
    (tmp_path / "ours").mkdir()
    claim(tmp_path / "ours", DATASET)
    assert refuse_foreign(tmp_path / "ours", DATASET, "--out") == "ours"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*theirs: folder is not empty and holds no p2ptools dataset"):
        refuse_foreign(tmp_path / "theirs", DATASET, "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; --out expects a folder"):
        check_folder_path(tmp_path / "file", "--out")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_folder_path(tmp_path / "file" / "below", "--out")


def test_refuse_overlap_follows_symlinks(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "src")
    with pytest.raises(ConfigError, match="is the input"):
        refuse_overlap(tmp_path / "link", [tmp_path / "src"])
    refuse_overlap(tmp_path / "elsewhere", [tmp_path / "src", None])  # no overlap: nothing raised


def test_refuse_unknown_entries_looks_inside_the_listed_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "1.jpg").write_bytes(b"x")
    (tmp_path / "train" / ".tmp-abc").write_bytes(b"x")
    known = lambda name: name in ("train", "manifest.json")  # noqa: E731
    refuse_unknown_entries(tmp_path, known, "--out", listed={"train/1.jpg"}, within=("train",))
    (tmp_path / "train" / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"also holds files p2ptools did not write \(train/mine.txt\)"):
        refuse_unknown_entries(tmp_path, known, "--out", listed={"train/1.jpg"}, within=("train",))
    (tmp_path / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match=r"thesis.tex, train/mine.txt"):
        refuse_unknown_entries(tmp_path, known, "--out", listed={"train/1.jpg"}, within=("train",))


def test_swap_in_replaces_and_recovers_a_swap_cut_short(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "v").write_text("old")
    new = staging_path(out)
    assert new == tmp_path / ".out.p2ptools-new"
    new.mkdir()
    (new / "v").write_text("new")
    swap_in(new, out)
    assert (out / "v").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]
    # killed between the two renames: only the old copy exists; recovery puts it back
    os.replace(out, tmp_path / ".out.p2ptools-old")
    recover_swap(out)
    assert (out / "v").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]
    # killed after the second rename: the old copy is stale and removed
    (tmp_path / ".out.p2ptools-old").mkdir()
    recover_swap(out)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_carry_over_moves_only_what_the_new_folder_lacks(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "report.json").write_text(folder.name)
        seal(folder, DATASET)
    (old / "notes.txt").write_text("mine")
    assert carry_over(old, new) == ["notes.txt"]
    assert (new / "notes.txt").read_text() == "mine" and (new / "report.json").read_text() == "new"
    assert carry_over(tmp_path / "absent", new) == []


def test_cache_root_and_file_key(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("P2PTOOLS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "p2ptools"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "p2ptools"
    f = tmp_path / "w.caffemodel"
    f.write_bytes(b"abc")
    key = file_key(f)
    assert file_key(f) == key
    os.utime(f, ns=(1, 1))
    assert file_key(f) != key
