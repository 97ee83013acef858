"""``--backend ray`` on a real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs: two
cells at once, one worker process each): a worker killed mid-training is retried by Ray and the
sweep ends with the local backend's results, byte for byte; one killed past ``max_retries`` is a
failed cell that a rerun resumes; a killed driver's task is ended by Ray; bad addresses and
options are one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from backend_checks import CELLS, MidTrainingKiller, assert_same_results, checkpoints, folder_of, sweep_with_a_kill
from sweep_specs import spec_text, write_spec

from p2ptools.errors import ConfigError

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'p2ptools[ray]')")
L1_ONLY = '\n[[rows]]\nlabel = "L1"\nloss = "l1"\n'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs, shared by this module's tests; its address. Every
    process of the cluster is in the process group of its ``ray start``, killed whole at the end
    (``ray stop`` would stop every Ray cluster of the machine's user). Token authentication off on
    both sides: Ray turns it on when ``~/.ray/auth_token`` exists, which a local ``ray.init()`` writes."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
               "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
               "--object-store-memory", str(100 * 2**20), "--ray-client-server-port", str(_free_port()),
               "--dashboard-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()), "--temp-dir", str(temp)]
        starter = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = starter.communicate(timeout=180)
            assert starter.returncode == 0, output
            yield f"127.0.0.1:{port}"
        finally:
            if starter.poll() is None:
                starter.kill()
            if ray.is_initialized():
                ray.shutdown()
            with_group = _group_alive(starter.pid)
            if with_group:
                os.killpg(starter.pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while with_group and _group_alive(starter.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            shutil.rmtree(temp, ignore_errors=True)


def _sweep(spec_path: Path, sweep: Path, **options):
    return sweep_with_a_kill(spec_path, sweep, "ray", **options)


def test_a_sweep_on_a_ray_cluster_survives_a_killed_worker_with_the_local_results(ray_cluster, reference_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    outcome, ((label, seed), pid, at_kill) = _sweep(write_spec(tmp_path, reference_sweep.parent / "data"), sweep, address=ray_cluster)
    assert not outcome.failed, outcome.failed
    assert sorted(outcome.ran) == CELLS
    folder = folder_of(sweep, label, seed)
    state = json.loads((folder / "cell.json").read_text())
    assert state["status"] == "done" and state["backend"] == "ray" and state["threads"] == 1
    assert state["pid"] != pid  # Ray ran the task again in another worker process, which resumed the cell
    assert at_kill["pid"] == pid and at_kill["step"] == "train"
    log = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_L1" not in r] == [1, 2, 3, 4]  # resumed at step 2: steps 3-4 logged once
    assert_same_results(sweep, reference_sweep)


def test_a_worker_killed_past_max_retries_fails_its_cell_in_one_line_and_a_rerun_resumes_it(ray_cluster, reference_sweep, tmp_path, cli):
    data = reference_sweep.parent / "data"
    spec, sweep = write_spec(tmp_path, data, spec_text(data=str(data), seeds="[0]", rows=L1_ONLY)), tmp_path / "sweep"
    outcome, (cell, pid, _) = _sweep(spec, sweep, address=ray_cluster, max_retries=0)
    assert cell == ("L1", 0) and list(outcome.failed) == [cell]  # the driver lived on and reported it
    error = "the cell's Ray worker died 1 time(s) (max_retries 0 ran out)"
    state = json.loads((folder_of(sweep, *cell) / "cell.json").read_text())
    assert state["status"] == "failed" and state["error"] == error and state["pid"] == pid
    assert f"L1 seed 0: failed: {error}\n" in cli("sweep", "status", sweep).stdout
    res = cli("sweep", "run", spec, "--out", sweep, "--backend", "ray", "--ray-address", ray_cluster, "--no-progress")
    assert res.code == 0, res
    assert "1/1 cells done (1 run now)" in res.stdout
    assert checkpoints(folder_of(sweep, *cell)) == checkpoints(folder_of(reference_sweep, *cell))  # resumed from epoch 1's


def test_a_killed_driver_takes_its_ray_tasks_with_it_and_a_rerun_resumes(ray_cluster, reference_sweep, tmp_path, cli):
    data = reference_sweep.parent / "data"
    spec, sweep = write_spec(tmp_path, data, spec_text(data=str(data), seeds="[0]", rows=L1_ONLY)), tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, "-m", "p2ptools", "sweep", "run", str(spec), "--out", str(sweep), "--backend", "ray",
                               "--ray-address", ray_cluster, "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    catcher = MidTrainingKiller(sweep, "ray")
    try:
        deadline = time.monotonic() + 300
        while not (state := catcher.catchable(("L1", 0))):  # a worker in training after epoch 1's checkpoint
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "the cell never reached its epoch-1 checkpoint"
            time.sleep(0.005)
        worker = state["pid"]
        os.kill(worker, signal.SIGSTOP)  # frozen: only Ray can end it now
        driver.kill()
        driver.wait(timeout=30)
        deadline = time.monotonic() + 120
        while _alive(worker):
            assert time.monotonic() < deadline, f"Ray left the dead driver's worker {worker} running"
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stderr.close()
    assert json.loads((folder_of(sweep, "L1", 0) / "cell.json").read_text())["status"] == "running"  # interrupted
    res = cli("sweep", "run", spec, "--out", sweep, "--backend", "ray", "--ray-address", ray_cluster, "--no-progress")
    assert res.code == 0, res
    assert "1/1 cells done (1 run now)" in res.stdout
    assert checkpoints(folder_of(sweep, "L1", 0)) == checkpoints(folder_of(reference_sweep, "L1", 0))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_an_address_without_a_cluster_is_one_line_before_any_cell(reference_sweep, tmp_path, cli):
    port = _free_port()  # nothing listens there
    spec = write_spec(tmp_path, reference_sweep.parent / "data")
    res = cli("sweep", "run", spec, "--out", tmp_path / "sweep", "--backend", "ray", "--ray-address", f"127.0.0.1:{port}")
    assert res.code == 1
    assert res.stderr.startswith(f"error: --ray-address 127.0.0.1:{port}: no Ray cluster answers there (")
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "sweep" / "cells").exists()


def test_bad_ray_options_are_one_line():
    from p2ptools.sweep.backends import get_backend

    with pytest.raises(ConfigError, match=r"^--ray-num-gpus: invalid value -1; give a number >= 0$"):
        get_backend("ray", num_gpus=-1)


def test_a_cell_asks_ray_for_a_gpu_when_the_spec_trains_on_one_and_the_cluster_has_one(reference_sweep):
    from p2ptools.sweep.backends import get_backend
    from p2ptools.sweep.store import read_stored

    class Cluster:  # ray.cluster_resources() of a cluster with or without GPUs
        def __init__(self, gpus: int) -> None:
            self.gpus = gpus

        def cluster_resources(self) -> dict:
            return {"CPU": 8.0, "GPU": float(self.gpus)} if self.gpus else {"CPU": 8.0}

    stored = read_stored(reference_sweep)  # device cpu
    gpu_spec = {**stored, "rows": [{**row, "options": {**row["options"], "device": "auto"}} for row in stored["rows"]]}
    backend = get_backend("ray")
    assert backend._gpus(Cluster(2), stored) == 0
    assert backend._gpus(Cluster(2), gpu_spec) == 1
    assert backend._gpus(Cluster(0), gpu_spec) == 0  # "auto" on a CPU cluster trains on the CPU
    assert get_backend("ray", num_gpus=0.5)._gpus(Cluster(0), gpu_spec) == 0.5


def test_a_cell_larger_than_the_local_cluster_is_one_line_not_a_wait():
    from p2ptools.sweep.backends.ray import _refuse_infeasible

    class Cluster:  # ray.cluster_resources() of a 2-core machine without GPUs
        def cluster_resources(self) -> dict:
            return {"CPU": 2.0, "memory": 1e9}

    _refuse_infeasible(Cluster(), 2, 0)
    with pytest.raises(ConfigError, match=r"^--backend ray: a cell asks for 4 CPUs \(the spec's threads\) and this machine's Ray cluster has 2;"):
        _refuse_infeasible(Cluster(), 4, 0)
    with pytest.raises(ConfigError, match=r"^--ray-num-gpus 1: this machine's Ray cluster has 0 GPU\(s\)$"):
        _refuse_infeasible(Cluster(), 1, 1)
