"""Issue 23, group 1 (library side): ownership is a record p2ptools writes, not a file name; an
``--overwrite`` removes only what the record lists, and carries everything else over."""

from __future__ import annotations

import json
import os

import pytest

from p2ptools.errors import ConfigError
from p2ptools.outputs import (OWNER_NAME, OutputKind, carry_over, claim, folder_state, is_ours, read_ownership, refuse_foreign,
                              refuse_unrecorded, seal, unrecorded)  # fmt: skip
from p2ptools.pairs import DATASET
from p2ptools.training.checkpoint import RUN

REPORT = OutputKind("evaluation", ("report.json",))


def test_a_marker_file_name_proves_nothing(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"fcn": {}}))
    (folder / "config.json").write_text(json.dumps({"plugin": "pix2pix", "options": {}}))
    (folder / "manifest.json").write_text(json.dumps({"pairs": []}))
    for kind in (REPORT, RUN, DATASET):
        assert folder_state(folder, kind) == "foreign"
        with pytest.raises(ConfigError, match=r"holds no p2ptools .*a file named .* proves nothing"):
            refuse_foreign(folder, kind, "--out")
    # an ownership record needs our format key; a user's file of that name is not one
    (folder / OWNER_NAME).write_text(json.dumps({"kind": "evaluation"}))
    assert read_ownership(folder) is None and folder_state(folder, REPORT) == "foreign"
    (folder / OWNER_NAME).write_text("not json")
    assert read_ownership(folder) is None


def test_a_record_is_of_one_kind_and_never_a_link(tmp_path):
    ours, user = tmp_path / "ours", tmp_path / "user"
    ours.mkdir()
    user.mkdir()
    claim(ours, REPORT)
    assert is_ours(ours, REPORT) and not is_ours(ours, RUN)  # an evaluation is not a run
    (user / "notes.txt").write_text("mine")
    (user / OWNER_NAME).symlink_to(ours / OWNER_NAME)  # a link to a genuine record elsewhere
    assert folder_state(user, REPORT) == "foreign"
    # a link to a user's folder is judged by what it points at
    (tmp_path / "link").symlink_to(user)
    assert folder_state(tmp_path / "link", REPORT) == "foreign"


def test_legacy_proofs_are_format_keys_inside_our_own_markers(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format": "p2ptools-aligned/1", "pairs": []}))
    assert folder_state(data, DATASET) == "ours"  # a dataset built before records existed
    (data / "manifest.json").write_text(json.dumps({"format": "someone-else/1"}))
    assert folder_state(data, DATASET) == "foreign"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoints" / "latest_state.json").write_text(json.dumps({"format": "p2ptools-pix2pix-state/1"}))
    assert folder_state(run, RUN) == "ours"
    (run / "checkpoints" / "latest_state.json").write_text(json.dumps({"format": "x"}))
    assert folder_state(run, RUN) == "foreign"


def _sealed_report(folder):
    (folder / "samples").mkdir(parents=True)
    (folder / "report.json").write_text("{}")
    (folder / "samples" / "a.png").write_bytes(b"a")
    return seal(folder, REPORT)


def test_unrecorded_lists_the_users_files_at_any_depth(tmp_path):
    rep = tmp_path / "rep"
    assert _sealed_report(rep) == ["report.json", "samples/a.png"]
    assert json.loads((rep / OWNER_NAME).read_text())["files"] == ["report.json", "samples/a.png"]
    assert unrecorded(rep) == []
    (rep / "samples" / "keep.png").write_bytes(b"mine")
    (rep / "notes").mkdir()
    (rep / "notes" / "n.txt").write_text("mine")
    (rep / "samples" / ".tmp-x").write_bytes(b"")  # our own temporary: not the user's
    os.symlink(tmp_path, rep / "samples" / "elsewhere")  # a link is an entry, never followed
    assert unrecorded(rep) == ["notes/", "samples/elsewhere", "samples/keep.png"]
    with pytest.raises(ConfigError, match=r"--output .*rep: also holds files p2ptools did not write \(notes/, samples/elsewhere"):
        refuse_unrecorded(rep, "--output")


def test_carry_over_moves_nested_user_files_and_refuses_a_clash_before_moving_any(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    _sealed_report(old)
    _sealed_report(new)
    (old / "samples" / "keep.png").write_bytes(b"mine")
    (old / "notes.txt").write_text("mine")
    assert carry_over(old, new) == ["notes.txt", "samples/keep.png"]
    assert (new / "samples" / "keep.png").read_bytes() == b"mine" and (new / "notes.txt").read_text() == "mine"
    # the user's file sits where the new output writes one of its own: refused, nothing moved
    (old / "samples" / "b.png").write_bytes(b"user's b")
    (old / "diary.txt").write_text("mine")
    (new / "samples" / "b.png").write_bytes(b"ours")
    with pytest.raises(ConfigError, match=r"holds samples/b.png, which p2ptools did not write"):
        carry_over(old, new)
    assert (old / "samples" / "b.png").read_bytes() == b"user's b" and (old / "diary.txt").is_file()
    assert not (new / "diary.txt").exists()
