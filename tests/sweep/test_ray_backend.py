"""``--backend ray`` on a real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs: two
cells at once, one worker process each): a worker killed mid-training is retried by Ray and the
sweep ends with the local backend's results, byte for byte."""

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
from backend_checks import CELLS, MidTrainingKiller, assert_same_results, folder_of
from sweep_specs import write_spec

from p2ptools.errors import ConfigError

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'p2ptools[ray]')")


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


@pytest.fixture
def ray_cluster(monkeypatch):
    """A Ray head on 127.0.0.1 with 2 CPUs; its address. Every process of the cluster is in the
    process group of its ``ray start``, killed whole at the end (``ray stop`` would stop every Ray
    cluster of the machine's user). Token authentication off on both sides: Ray turns it on when
    ``~/.ray/auth_token`` exists, which a local ``ray.init()`` writes."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    env = dict(os.environ)
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
           "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
           "--object-store-memory", str(100 * 2**20), "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port()),
           "--dashboard-agent-listen-port", str(_free_port()), "--temp-dir", str(temp)]
    starter = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def test_a_sweep_on_a_ray_cluster_survives_a_killed_worker_with_the_local_results(ray_cluster, reference_sweep, tmp_path):
    from p2ptools.sweep.backends import get_backend
    from p2ptools.sweep.runner import run_sweep
    from p2ptools.sweep.spec import load_spec

    spec, sweep = load_spec(write_spec(tmp_path, reference_sweep.parent / "data")), tmp_path / "sweep"
    killer = MidTrainingKiller(sweep, "ray")
    killer.start()
    try:
        outcome = run_sweep(spec, sweep, get_backend("ray", address=ray_cluster), progress=False)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no cell was caught between its epoch-1 checkpoint and its end"
    (label, seed), pid, at_kill = killer.killed
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
