"""--log wandb: offline runs read back from wandb's own ``.wandb`` files (its protobuf records, in
its block format); a run resumed after a crash rewinds the same wandb run to the checkpoint, so
the uploaded curves hold each step once, equal to log.jsonl. No network: WANDB_MODE=offline."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_ARGS, tiny_options, train_until_crash  # noqa: E402
from p2ptools_pix2pix import trainer  # noqa: E402
from test_tracking import _grid_shape  # noqa: E402

from p2ptools.errors import ConfigError  # noqa: E402
from p2ptools.training import wandb_backend  # noqa: E402
from p2ptools.training.tracking import check_trackers, parse_trackers  # noqa: E402

wandb = pytest.importorskip("wandb")
pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")

TAGS = ("train/G_GAN", "train/G_L1_weighted", "train/D_real", "train/D_fake", "train/lr", "train/images_per_s", "val/L1")


@pytest.fixture(scope="module", autouse=True)
def wandb_offline(tmp_path_factory):
    """Offline wandb whose settings, cache and config live in a temporary home (one wandb service
    per test process: the environment is set once for the module, and the service stopped after)."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_DIR", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL", "WANDB_RUN_ID",
                     "WANDB_RESUME", "NETRC"):
            mp.delenv(name, raising=False)
        env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": home, "XDG_CACHE_HOME": home / "cache",
               "XDG_CONFIG_HOME": home / "config", "WANDB_CACHE_DIR": home / "wandb-cache",
               "WANDB_CONFIG_DIR": home / "wandb-config", "WANDB_DATA_DIR": home / "wandb-data",
               "WANDB_ARTIFACT_DIR": home / "wandb-artifacts"}
        for name, value in env.items():
            mp.setenv(name, str(value))
        yield
        wandb.teardown()


# ------------------------------------------------------------------ reading .wandb files back

def read_records(path: Path):
    """The protobuf Records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    32 KiB blocks of chunks (crc32 4 bytes, length 2, type 1: full 1, first 2, middle 3, last 4)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0:
            break
        chunk, pos = data[pos + 7: pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def read_offline_runs(run: Path) -> list[dict]:
    """Each offline process of the run, in start order: its run record, history rows by step, exit code."""
    processes = []
    for file in (run / "wandb").glob("offline-run-*/run-*.wandb"):
        process = {"dir": file.parent, "rows": {}, "exit_code": None}
        for record in read_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                process["run"] = record.run
            elif kind == "history":
                items: dict = {}
                for item in record.history.item:  # nested_key: the path into a logged dict (an image's fields)
                    *parents, leaf = list(item.nested_key) or [item.key]
                    target = items
                    for name in parents:
                        target = target.setdefault(name, {})
                    target[leaf] = json.loads(item.value_json)
                assert record.history.step.num not in process["rows"]  # each step is one row
                process["rows"][record.history.step.num] = items
            elif kind == "exit":
                process["exit_code"] = record.exit.exit_code
        processes.append(process)
    return sorted(processes, key=lambda p: p["run"].start_time.ToNanoseconds())


def combined_history(processes: list[dict]) -> dict[int, dict]:
    """The run's history as the server ends up with it after ``wandb sync`` (in start order): a
    process that rewinds its own run to step S first drops the rows after S."""
    rows: dict[int, dict] = {}
    for process in processes:
        branch = process["run"].branch_point
        if branch.run == process["run"].run_id and branch.metric == "_step":
            rows = {step: row for step, row in rows.items() if step <= branch.value}
        for step, row in process["rows"].items():
            assert step not in rows, f"step {step} logged twice"
            rows[step] = row
    return rows


def curve(rows: dict[int, dict], tag: str) -> list[tuple[int, float]]:
    return [(step, row[tag]) for step, row in sorted(rows.items()) if tag in row]


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def log_curve(run: Path, key: str) -> list[tuple[int, float]]:
    records = [r for r in read_log(run) if key in r and not (key == "lr" and "val_L1" in r)]
    return [(r["step"], r[key]) for r in records]


# ------------------------------------------------------------------ tests

def test_wandb_offline_run_holds_every_curve_the_samples_and_the_config(tiny_data, tmp_path):
    run = trainer.train(tiny_options(log="wandb", epochs=1, epochs_decay=1), tiny_data, tmp_path / "run", progress=False)
    [process] = read_offline_runs(run)
    record = process["run"]
    assert record.run_id == wandb_backend.read_run_id(run) and (record.display_name, record.project) == ("run", "p2ptools")
    config = {item.key: json.loads(item.value_json) for item in record.config.update}
    assert config["options"]["netG"] == "unet_32" and config["options"]["log"] == "wandb"
    assert config["data"] == str(tiny_data) and config["generator_params"] > 0
    rows = process["rows"]
    for tag in TAGS:
        key = tag.split("/", 1)[1] if tag.startswith("train/") else "val_L1"
        assert [s for s, _ in curve(rows, tag)] == [s for s, _ in log_curve(run, key)], tag
        assert [v for _, v in curve(rows, tag)] == pytest.approx([v for _, v in log_curve(run, key)], rel=1e-6), tag
    assert [s for s, _ in curve(rows, "train/G_L1_weighted")] == list(range(1, 9)) and [s for s, _ in curve(rows, "val/L1")] == [4, 8]
    images = curve(rows, "samples")
    assert [s for s, _ in images] == [4, 8]
    assert all(image["_type"] == "image-file" and (image["height"], image["width"]) == _grid_shape(rows=4, tile=32) for _, image in images)
    assert all((process["dir"] / "files" / image["path"]).is_file() for _, image in images)
    assert process["exit_code"] == 0


def test_a_resumed_run_rewinds_the_same_wandb_run_to_its_checkpoint(monkeypatch, tiny_data, tmp_path):
    options = tiny_options(log="wandb", checkpoint_every=3, epochs=2, epochs_decay=1)
    run = tmp_path / "run"
    train_until_crash(monkeypatch, options, tiny_data, run, crash_at=8)  # no checkpoint after step 6
    [crashed] = read_offline_runs(run)
    assert sorted(crashed["rows"]) == list(range(1, 8)) and crashed["exit_code"] == 1  # finished as failed
    run_id = wandb_backend.read_run_id(run)

    trainer.train(options, tiny_data, run, resume=True, progress=False)
    first, resumed = read_offline_runs(run)
    assert first["dir"] == crashed["dir"] and wandb_backend.read_run_id(run) == run_id
    assert resumed["run"].run_id == run_id  # the same wandb run, continued
    branch = resumed["run"].branch_point
    assert (branch.run, branch.metric, branch.value) == (run_id, "_step", 6)
    assert sorted(resumed["rows"]) == list(range(7, 13)) and resumed["exit_code"] == 0
    rows = combined_history([first, resumed])  # step 7 of the crashed process is rewound away
    assert [s for s, _ in curve(rows, "train/G_L1_weighted")] == list(range(1, 13))
    assert [s for s, _ in curve(rows, "val/L1")] == [4, 8, 12] and [s for s, _ in curve(rows, "samples")] == [4, 8, 12]
    for tag, key in (("train/G_L1_weighted", "G_L1_weighted"), ("val/L1", "val_L1"), ("train/lr", "lr")):
        assert curve(rows, tag) == [(s, pytest.approx(v, rel=1e-6)) for s, v in log_curve(run, key)], tag


def test_sigkill_then_resume_continues_the_curves_with_each_step_once(tiny_data, tmp_path):
    """A real SIGKILL: the killed process leaves what wandb had written (flushed every 0.5 s here,
    15 s by default); the resumed one rewinds to the checkpoint and logs the rest."""
    run = tmp_path / "run"
    train = [sys.executable, "-m", "p2ptools", "train"]
    # each process its own wandb service, as from a shell (WANDB_SERVICE, set by this process's wandb,
    # would attach both to ours, where the killed process's stream keeps the run id "in use")
    own = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env = dict(own, **{trainer.STALL_ENV: "7", "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "0.5"})
    proc = subprocess.Popen([*train, "--data", str(tiny_data), "--out", str(run), *TINY_ARGS, "--checkpoint-every", "6",
                             "--log", "wandb"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)

    def killable() -> bool:  # checkpoint 6, step 7 logged (so wandb committed the row of step 6), all written
        state = run / "checkpoints" / "latest_state.json"
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}): {proc.stderr.read()}")
        if not state.is_file() or json.loads(state.read_text())["step"] != 6 or not (run / "wandb").is_dir():
            return False
        processes = read_offline_runs(run) if list((run / "wandb").glob("offline-run-*/*.wandb")) else []
        return bool(processes) and "run" in processes[0] and 6 in processes[0]["rows"]

    deadline = time.monotonic() + 120
    while not killable():
        assert time.monotonic() < deadline, "timed out waiting for the trainer"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run([*train, "--resume", str(run), "--no-progress"], env=own, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    killed, resumed = read_offline_runs(run)
    assert killed["exit_code"] is None and resumed["exit_code"] == 0  # no exit record: killed without warning
    assert set(range(1, 7)) <= set(killed["rows"]) and resumed["run"].run_id == killed["run"].run_id
    assert resumed["run"].branch_point.value == 6 and sorted(resumed["rows"]) == list(range(7, 13))
    rows = combined_history([killed, resumed])
    for tag, key in (("train/G_L1_weighted", "G_L1_weighted"), ("val/L1", "val_L1")):
        assert curve(rows, tag) == [(s, pytest.approx(v, rel=1e-6)) for s, v in log_curve(run, key)], tag
    assert [s for s, _ in curve(rows, "train/G_L1_weighted")] == list(range(1, 13))


def test_log_wandb_without_the_package_fails_before_training(monkeypatch, tiny_data, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    message = r"^--log wandb needs the wandb package: pip install 'p2ptools\[wandb\]'$"
    with pytest.raises(ConfigError, match=message):
        check_trackers(parse_trackers("tensorboard,wandb"))
    with pytest.raises(ConfigError, match=message):
        trainer.train(tiny_options(log="jsonl,wandb"), tiny_data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_mode_is_offline_without_credentials_and_never_probes_then(monkeypatch, tmp_path):
    assert parse_trackers("wandb, tensorboard") == ("jsonl", "tensorboard", "wandb")
    probes = []
    monkeypatch.setattr(wandb_backend, "reachable", lambda host, *a, **k: probes.append(host) or True)
    home = {"HOME": str(tmp_path)}
    assert wandb_backend.choose_mode(home) == "offline" and probes == []
    assert wandb_backend.choose_mode(home | {"WANDB_MODE": "online"}) is None  # the user's choice: wandb reads it
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k3y\n")
    assert wandb_backend.choose_mode(home) is None and probes == ["api.wandb.ai"]  # wandb's default: online
    assert wandb_backend.choose_mode(home | {"WANDB_BASE_URL": "https://wandb.example.org"}) == "offline"  # no entry there
    assert wandb_backend.choose_mode({"HOME": str(tmp_path / "x"), "WANDB_API_KEY": "k"}) is None
    monkeypatch.setattr(wandb_backend, "reachable", lambda *a, **k: False)  # credentials, no network
    assert wandb_backend.choose_mode(home) == "offline"


def test_a_server_that_refuses_the_rewind_gets_the_run_resumed_instead(monkeypatch, tmp_path):
    """Online only (rewinding is a server preview): wandb.init stands in for a server saying no."""
    wandb_backend.write_run_id(tmp_path, "abc12345")
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if "resume_from" in kwargs:
            raise wandb.errors.CommError("rewinding runs is not enabled")
        return object()

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb_backend, "choose_mode", lambda: None)  # credentials and a server
    with pytest.warns(UserWarning, match="could not rewind run abc12345 to step 6 .*resuming it after its last logged step"):
        tracker = wandb_backend.WandbTracker(tmp_path, resume_step=6, config={"options": {"lr": 1}})
    assert tracker.run_id == "abc12345" and [c.get("resume_from") for c in calls] == ["abc12345?_step=6", None]
    assert (calls[1]["id"], calls[1]["resume"], calls[1]["mode"]) == ("abc12345", "allow", None)
    assert calls[1]["config"] == {"options": {"lr": 1}} and calls[1]["dir"] == str(tmp_path)
