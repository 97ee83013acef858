"""Issue 9, run side: --overwrite checks every pair first and keeps the old run until the new one has a
checkpoint; foreign folders are refused; one process per run (locks); a full disk is one line; the
smaller run cases (bad config types, runs that stopped before their first checkpoint)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS, make_dataset  # noqa: E402
from p2p_testutils import assert_one_line_error, tree_bytes  # noqa: E402
from p2ptools_pix2pix.trainer import STALL_ENV  # noqa: E402

from p2ptools.training import checkpoint as ckpt  # noqa: E402

P2PTOOLS = [sys.executable, "-m", "p2ptools"]




@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", train=6, val=2)


@pytest.fixture
def run(data, tmp_path, cli) -> Path:
    """A finished two-step run: checkpoints, log, samples, config."""
    out = tmp_path / "run"
    res = cli("train", "--data", data, "--out", out, *TINY_ARGS, "--max-steps", "2")
    assert res.code == 0, res.stderr
    assert (out / "checkpoints" / "latest_state.json").is_file() and (out / "log.jsonl").is_file()
    return out


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_inside(path: Path) -> None:
    """Damage the compressed pixels but keep the file complete (header and end marker intact): only
    decoding finds it, half-way through training."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 8
    for i in range(start, start + 40):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# -- case 3: train --overwrite -------------------------------------------------------------------


def test_case3_overwrite_checks_every_pair_before_touching_the_old_run(run, data, cli):
    before = tree_bytes(run)
    fifth = sorted((data / "train").iterdir())[4]
    _truncate(fifth)
    res = cli("train", "--data", data, "--out", run, *TINY_ARGS, "--max-steps", "2", "--lambda-l1", "10", "--overwrite")
    assert_one_line_error(res, str(fifth), "truncated")
    assert tree_bytes(run) == before  # checkpoints, log and samples all still there


def test_case3_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(run, data, cli):
    before = tree_bytes(run)
    _corrupt_inside(sorted((data / "train").iterdir())[3])  # passes the header checks, fails when decoded
    res = cli("train", "--data", data, "--out", run, *TINY_ARGS, "--max-steps", "6", "--lambda-l1", "10", "--overwrite")
    line = assert_one_line_error(res, "003.png", "previous run", "is back in place")
    assert str(run) in line
    assert tree_bytes(run) == before and not (run / ckpt.REPLACED).exists()
    shutil.copy(data / "train" / "000.png", data / "train" / "003.png")  # repaired: the replacement completes
    res = cli("train", "--data", data, "--out", run, *TINY_ARGS, "--max-steps", "2", "--lambda-l1", "10", "--overwrite")
    assert res.code == 0, res.stderr
    assert json.loads((run / "config.json").read_text())["options"]["lambda_l1"] == 10.0
    assert not (run / ckpt.REPLACED).exists()
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines() if '"step"' in line] == [1, 2]


def test_case3_overwrite_refuses_a_foreign_folder_and_keeps_its_samples(data, tmp_path, cli):
    user = tmp_path / "mine"
    (user / "samples").mkdir(parents=True)
    (user / "samples" / "holiday.png").write_bytes(b"a user's picture")
    (user / "notes.txt").write_text("keep")
    before = tree_bytes(user)
    res = cli("train", "--data", data, "--out", user, *TINY_ARGS, "--overwrite")
    assert_one_line_error(res, f"--out {user}", "holds no p2ptools run", "even with --overwrite")
    assert tree_bytes(user) == before


# -- case 5: one process per run --------------------------------------------------------------------


def _start_stalled(data: Path, out: Path) -> subprocess.Popen:
    """A real training run that stops at step 2 (after its first checkpoint at step 1) and waits."""
    env = dict(os.environ, **{STALL_ENV: "2", "OMP_NUM_THREADS": "1"})
    return subprocess.Popen([*P2PTOOLS, "train", "--data", str(data), "--out", str(out), *TINY_ARGS, "--checkpoint-every", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_case5_a_live_run_is_locked_against_resume_and_a_second_train(data, tmp_path, cli):
    out = tmp_path / "live"
    proc = _start_stalled(data, out)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "latest_state.json").is_file():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the trainer did not reach its first checkpoint"
            time.sleep(0.05)
        before = tree_bytes(out / "checkpoints")
        for args in (("train", "--resume", out, "--no-progress"), ("train", "--data", data, "--out", out, *TINY_ARGS),
                     ("train", "--data", data, "--out", out, *TINY_ARGS, "--overwrite")):  # fmt: skip
            res = cli(*args)
            assert_one_line_error(res, str(out), "in use by another p2ptools process", f"PID {proc.pid}")
        assert tree_bytes(out / "checkpoints") == before and proc.poll() is None  # the live run is untouched
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    res = cli("train", "--resume", out)  # the kernel dropped the lock with its holder
    assert res.code == 0, res.stderr


def test_case5_two_trains_on_one_out_at_once_never_both_start(data, tmp_path):
    out = tmp_path / "race"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [*P2PTOOLS, "train", "--data", str(data), "--out", str(out), *TINY_ARGS, "--max-steps", "1"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    (err,) = [e for code, e in results if code == 1]
    assert "in use by another p2ptools process" in err or "already holds this run" in err, err


# -- case 7: a full disk during a checkpoint save ----------------------------------------------------


def test_case7_full_disk_during_checkpoint_is_one_line_and_keeps_the_previous_checkpoint(data, tmp_path, cli, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    real_save, real_dump, calls = safetensors.torch.save_file, json.dump, []
    saved: dict[str, dict[str, bytes]] = {}

    def full_disk_after_first_checkpoint(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) > 3:  # G, D and the optimiser state of the first checkpoint went through
            if not saved:
                saved["first"] = tree_bytes(out / "checkpoints")
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        return real_save(tensors, filename, *args, **kwargs)

    out = tmp_path / "run"
    args = ("train", "--data", data, "--out", out, *TINY_ARGS, "--max-steps", "3", "--checkpoint-every", "1")
    monkeypatch.setattr(safetensors.torch, "save_file", full_disk_after_first_checkpoint)
    res = cli(*args)
    assert_one_line_error(res, str(out / ".tmp-checkpoints" / "latest_G.safetensors"), "cannot write (No space left on device)")
    assert tree_bytes(out / "checkpoints") == saved["first"] and not (out / ".tmp-checkpoints").exists()
    assert json.loads((out / "checkpoints" / "latest_state.json").read_text())["step"] == 1
    monkeypatch.undo()

    def json_full(obj, fh, *a, **kw):
        if getattr(fh, "name", "").endswith("latest_state.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_dump(obj, fh, *a, **kw)

    monkeypatch.setattr(json, "dump", json_full)
    before = tree_bytes(out / "checkpoints")
    res = cli("train", "--resume", out, "--no-progress")
    assert_one_line_error(res, "latest_state.json: cannot write (No space left on device)")
    assert tree_bytes(out / "checkpoints") == before and not (out / ".tmp-checkpoints").exists()
    monkeypatch.undo()
    assert cli("train", "--resume", out).code == 0  # space again: the run resumes from its step-1 checkpoint


# -- case 9: the smaller run cases ------------------------------------------------------------------


def test_case9_a_wrong_type_in_config_json_is_one_line(run, cli):
    config = json.loads((run / "config.json").read_text())
    config["options"]["ngf"] = "eight"
    (run / "config.json").write_text(json.dumps(config))
    for args in (("train", "--resume", run, "--no-progress"), ("translate", run, "--input", run.parent / "data" / "val", "--output", run.parent / "t")):
        assert_one_line_error(cli(*args), "config.json", "ngf", "eight")


def test_case9_a_run_killed_before_its_first_checkpoint_restarts_without_logging_steps_twice(run, cli):
    shutil.rmtree(run / "checkpoints")  # as if killed after logging steps 1-2 but before any checkpoint
    res = cli("train", "--resume", run)
    assert res.code == 0, res.stderr
    said = " ".join((res.stdout + res.stderr).split())
    assert "no checkpoint yet (the run stopped before its first one): starting again from step 0" in said
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines() if '"step"' in line]
    assert steps == [1, 2]  # trained again from step 0 to its --max-steps, each step logged once


def test_case9_a_run_that_failed_before_step_1_restarts_with_the_same_command(data, tmp_path, cli):
    out = tmp_path / "run"
    args = ("train", "--data", data, "--out", out, *TINY_ARGS, "--max-steps", "1")
    files = sorted((data / "train").iterdir())
    good = files[0].read_bytes()
    for p in files[1:]:  # the first pair is decoded up front; the others only when training reads them
        _corrupt_inside(p)
    failed = cli(*args)
    assert_one_line_error(failed, "not a readable image")
    assert (out / "config.json").is_file() and not (out / "checkpoints").exists()  # failed at its first batch
    for p in files[1:]:
        p.write_bytes(good)
    res = cli(*args)
    assert res.code == 0, res.stderr


# -- issue 23, group 1: ownership that cannot be faked ----------------------------------------------


def _user_folder_with_a_config(folder: Path) -> dict[str, bytes]:
    """A user's folder that merely holds a file called config.json (and samples of its own)."""
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "keep.png").write_bytes(b"a user's picture")
    (folder / "notes.txt").write_text("keep")
    (folder / "config.json").write_text(json.dumps({"plugin": "pix2pix", "plugin_version": "0.1.0", "options": {}}))
    return tree_bytes(folder)


def test_issue23_a_users_config_json_does_not_make_the_folder_a_run(data, tmp_path, cli):
    user = tmp_path / "mine"
    before = _user_folder_with_a_config(user)
    for extra in (("--overwrite",), ()):
        res = cli("train", "--data", data, "--out", user, *TINY_ARGS, "--max-steps", "1", *extra)
        assert_one_line_error(res, f"--out {user}", "holds no p2ptools run", "config.json proves nothing")
    assert_one_line_error(cli("train", "--resume", user, "--no-progress"), str(user), "holds no p2ptools run", "nothing to resume")
    link = tmp_path / "link"
    link.symlink_to(user)  # the same through a symlink to the user's folder
    res = cli("train", "--data", data, "--out", link, *TINY_ARGS, "--max-steps", "1", "--overwrite")
    assert_one_line_error(res, f"--out {link}", "holds no p2ptools run")
    assert tree_bytes(user) == before


def test_issue23_overwrite_of_a_run_refuses_a_users_file_inside_it_and_keeps_top_level_ones(run, data, cli):
    (run / "samples").mkdir(exist_ok=True)
    (run / "samples" / "keep.png").write_bytes(b"a user's picture")
    before = tree_bytes(run)
    res = cli("train", "--data", data, "--out", run, *TINY_ARGS, "--max-steps", "1", "--lambda-l1", "10", "--overwrite")
    assert_one_line_error(res, f"--out {run}", "also holds files p2ptools did not write (samples/keep.png)")
    assert tree_bytes(run) == before
    (run / "samples" / "keep.png").rename(run / "keep.png")  # beside the run's own entries: left where it is
    res = cli("train", "--data", data, "--out", run, *TINY_ARGS, "--max-steps", "1", "--lambda-l1", "10", "--overwrite")
    assert res.code == 0, res.stderr
    assert (run / "keep.png").read_bytes() == b"a user's picture"
    assert json.loads((run / "config.json").read_text())["options"]["lambda_l1"] == 10.0


def test_issue23_a_run_inside_its_dataset_is_refused(data, cli):
    for out in (data / "runs" / "r", data / "train" / "r", data):
        res = cli("train", "--data", data, "--out", out, *TINY_ARGS, "--max-steps", "1")
        assert_one_line_error(res, f"--out {out}", "the input")
        assert not (data / "runs").exists() and not (data / "train" / "r").exists()
