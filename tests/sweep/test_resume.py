"""A sweep survives SIGKILL of its driver mid-training; --jobs 2 gives the bytes of --jobs 1; the
optional backends say which extra they need."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_specs import spec_text, write_spec

from p2ptools.errors import ConfigError
from p2ptools.sweep.store import cell_dir

L1_ONLY = '\n[[rows]]\nlabel = "L1"\nloss = "l1"\n'


def _checkpoints(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "run" / "checkpoints").iterdir())}


def _rows(path: Path, row: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["row"] == row]


def _l1_spec(tmp_path: Path, reference_sweep: Path) -> Path:
    data = reference_sweep.parent / "data"
    return write_spec(tmp_path, data, spec_text(data=str(data), rows=L1_ONLY))


def test_sigkill_of_the_driver_mid_training_then_rerun_finishes_with_the_same_results(reference_sweep, tmp_path, cli):
    spec, sweep = _l1_spec(tmp_path, reference_sweep), tmp_path / "sweep"
    env = {**os.environ, "P2PTOOLS_PIX2PIX_STALL_AT_STEP": "3"}  # step 3 of 4: after epoch 1's checkpoint
    driver = subprocess.Popen([sys.executable, "-m", "p2ptools", "sweep", "run", str(spec), "--out", str(sweep), "--no-progress"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cell = cell_dir(sweep, "L1", 0)
    deadline = time.monotonic() + 120
    try:
        checkpoint = cell / "run" / "checkpoints" / "latest_state.json"  # epoch 1's, written in the background
        while '"step": 3' not in _text(cell / "run" / "log.jsonl") or not checkpoint.is_file():  # training waits at step 3
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "training never reached step 3"
            time.sleep(0.1)
        state = json.loads((cell / "cell.json").read_text())
        assert state["status"] == "running" and state["step"] == "train" and state["pid"] == driver.pid
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stderr.close()
    assert driver.returncode == -signal.SIGKILL
    assert not (cell / "eval").exists()
    assert json.loads(checkpoint.read_text())["step"] == 2  # epoch 1's, to resume from
    status = cli("sweep", "status", sweep)
    assert "| L1 | interrupted | waiting |" in status.stdout, status
    assert "L1 seed 0: interrupted (resumable)" in status.stdout

    res = cli("sweep", "run", spec, "--out", sweep, "--no-progress")
    assert res.code == 0, res
    assert "2/2 cells done (2 run now)" in res.stdout
    log = [json.loads(line) for line in (cell / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_L1" not in r] == [1, 2, 3, 4]  # steps 3-4 logged once each
    for seed in (0, 1):  # the resumed cell is the uninterrupted one, byte for byte
        assert _checkpoints(cell_dir(sweep, "L1", seed)) == _checkpoints(cell_dir(reference_sweep, "L1", seed))
    assert _rows(sweep / "cells.csv", "L1") == _rows(reference_sweep / "cells.csv", "L1")
    table = (sweep / "table.md").read_text().split("| L1 |")[1].splitlines()[0]
    assert table == (reference_sweep / "table.md").read_text().split("| L1 |")[1].splitlines()[0]


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_two_jobs_give_the_checkpoint_bytes_of_one(reference_sweep, tmp_path, cli):
    spec, sweep = _l1_spec(tmp_path, reference_sweep), tmp_path / "sweep"
    res = cli("sweep", "run", spec, "--out", sweep, "--jobs", "2", "--no-progress")
    assert res.code == 0, res
    states = [json.loads((cell_dir(sweep, "L1", seed) / "cell.json").read_text()) for seed in (0, 1)]
    assert all(s["status"] == "done" and s["threads"] == 1 for s in states)
    assert states[0]["pid"] != states[1]["pid"] and os.getpid() not in (states[0]["pid"], states[1]["pid"])  # two subprocesses
    for seed in (0, 1):
        assert _checkpoints(cell_dir(sweep, "L1", seed)) == _checkpoints(cell_dir(reference_sweep, "L1", seed))
    assert _rows(sweep / "cells.csv", "L1") == _rows(reference_sweep / "cells.csv", "L1")


@pytest.mark.parametrize(("backend", "package", "extra"), [("ray", "ray", "ray"), ("slurm", "submitit", "slurm")])
def test_a_backend_without_its_extra_is_one_line_before_anything_runs(reference_sweep, tmp_path, cli, monkeypatch, backend, package, extra):
    from p2ptools.sweep.backends import get_backend

    monkeypatch.setitem(sys.modules, package, None)  # `import <package>` fails as if it were not installed
    with pytest.raises(ConfigError, match=rf"^the {backend} backend needs the optional extra: pip install 'p2ptools\[{extra}\]'$"):
        get_backend(backend)
    spec = _l1_spec(tmp_path, reference_sweep)
    res = cli("sweep", "run", spec, "--out", tmp_path / "sweep", "--backend", backend)
    assert res.code == 1 and res.stderr == f"error: the {backend} backend needs the optional extra: pip install 'p2ptools[{extra}]'\n"
    assert not (tmp_path / "sweep").exists()


def test_an_unknown_backend_lists_the_known_ones(reference_sweep, tmp_path, cli):
    res = cli("sweep", "run", _l1_spec(tmp_path, reference_sweep), "--out", tmp_path / "sweep", "--backend", "mpi")
    assert res.code == 1 and res.stderr == "error: --backend: invalid value 'mpi'; choose from local, ray, slurm\n"


def test_jobs_take_one_gpu_each_and_never_more_jobs_than_gpus(reference_sweep, monkeypatch):
    from p2ptools.sweep.backends import local

    assert local.job_env(1, 8)["CUDA_VISIBLE_DEVICES"] == "1" and local.job_env(1, 8)["P2PTOOLS_SWEEP_THREADS"] == "8"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert "CUDA_VISIBLE_DEVICES" not in local.job_env(None, 2)
    stored = json.loads((reference_sweep / "sweep.json").read_text())
    assert not local.trains_on_gpu(stored)  # the test spec trains on the CPU: no GPU pinning
    gpu_spec = {**stored, "rows": [{**r, "options": {**r["options"], "device": "auto"}} for r in stored["rows"]]}
    assert local.trains_on_gpu(gpu_spec)
    monkeypatch.setattr(local, "read_stored", lambda _: gpu_spec)
    monkeypatch.setattr(local, "gpu_count", lambda: 2)
    started = []
    monkeypatch.setattr(local, "_start", lambda *a: started.append(a) or pytest.fail("no cell may start"))
    with pytest.raises(ConfigError, match=r"^--jobs 3: this machine has 2 GPU\(s\) and cells never share one; use --jobs 2 or fewer$"):
        local.LocalBackend(jobs=3).run_cells(reference_sweep, [("L1", 0), ("L1", 1), ("L1+cGAN", 0)], lambda *a: None)
    assert started == []
