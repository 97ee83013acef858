"""``--backend slurm`` through submitit's local executor (every cell a job process on this
machine) and, where Slurm is installed, on a real one-node Slurm cluster: a job killed
mid-training is submitted again and the sweep ends with the local backend's results, byte for
byte; the Slurm options' errors are one line."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from backend_checks import CELLS, assert_same_results, checkpoints, folder_of, sweep_with_a_kill
from sweep_specs import spec_text, write_spec

from p2ptools.errors import ConfigError

submitit = pytest.importorskip("submitit", reason="the slurm extra is not installed (pip install 'p2ptools[slurm]')")


L1_ONLY = '\n[[rows]]\nlabel = "L1"\nloss = "l1"\n'


def _sweep(spec_path: Path, sweep: Path, **options):
    return sweep_with_a_kill(spec_path, sweep, "slurm", **options)


def test_a_sweep_through_submitit_survives_a_killed_job_with_the_local_results(reference_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    outcome, ((label, seed), pid, _) = _sweep(write_spec(tmp_path, reference_sweep.parent / "data"), sweep, executor="local")
    assert not outcome.failed, outcome.failed
    assert sorted(outcome.ran) == CELLS
    folder = folder_of(sweep, label, seed)
    state = json.loads((folder / "cell.json").read_text())
    assert state["status"] == "done" and state["backend"] == "slurm" and state["threads"] == 1
    assert state["pid"] != pid  # a second job ran the cell, resuming it
    jobs = sorted(p.name for p in (folder / "slurm").glob("*_0_log.out"))
    assert len(jobs) == 2, jobs  # the killed job and its resubmission, each with its log in the cell's folder
    log = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_L1" not in r] == [1, 2, 3, 4]  # resumed at step 2: steps 3-4 logged once
    for other in CELLS:
        if other != (label, seed):
            assert len(list((folder_of(sweep, *other) / "slurm").glob("*_0_log.out"))) == 1, other
    assert_same_results(sweep, reference_sweep)


def test_a_job_killed_past_max_retries_fails_its_cell_in_one_line_and_a_rerun_resumes_it(reference_sweep, tmp_path, cli):
    data = reference_sweep.parent / "data"
    spec, sweep = write_spec(tmp_path, data, spec_text(data=str(data), seeds="[0]", rows=L1_ONLY)), tmp_path / "sweep"
    outcome, (cell, pid, _) = _sweep(spec, sweep, executor="local", max_retries=0)
    assert cell == ("L1", 0) and list(outcome.failed) == [cell]  # the driver lived on and reported it
    folder = folder_of(sweep, *cell)
    (job,) = [p.name.split("_")[0] for p in (folder / "slurm").glob("*_0_log.out")]
    error = (f"the cell's local job {job} ended without finishing it (see {folder}/slurm/{job}_0_log.err), "
             "1 time(s) (max_retries 0)")
    state = json.loads((folder / "cell.json").read_text())
    assert state["status"] == "failed" and state["error"] == error and state["pid"] == pid
    assert f"L1 seed 0: failed: {error}\n" in cli("sweep", "status", sweep).stdout
    res = cli("sweep", "run", spec, "--out", sweep, "--backend", "slurm", "--slurm-executor", "local", "--no-progress")
    assert res.code == 0, res
    assert "1/1 cells done (1 run now)" in res.stdout
    assert checkpoints(folder) == checkpoints(folder_of(reference_sweep, *cell))  # resumed from epoch 1's checkpoint


@pytest.mark.parametrize(("options", "message"), [
    ({"executor": "pbs"}, r"^--slurm-executor: invalid value 'pbs'; choose from slurm, local$"),
    ({"executor": "local", "time": 0}, r"^--time: invalid value 0; give a whole number >= 1$"),
    ({"executor": "local", "gpus_per_job": -1}, r"^--gpus-per-job: invalid value -1; give a whole number >= 0$"),
])
def test_bad_slurm_options_are_one_line(options, message):
    from p2ptools.sweep.backends import get_backend

    with pytest.raises(ConfigError, match=message):
        get_backend("slurm", **options)


def test_the_slurm_executor_needs_the_time_and_slurm(monkeypatch):
    from p2ptools.sweep.backends import get_backend

    with pytest.raises(ConfigError, match=r"^--time: the slurm backend needs the minutes per cell's job"):
        get_backend("slurm", partition="gpu")
    monkeypatch.setenv("PATH", "/nonexistent")  # no srun
    with pytest.raises(ConfigError, match=r"^--backend slurm: no Slurm on this machine \(srun is not on PATH\); "):
        get_backend("slurm", time=60)


@pytest.fixture
def slurm(monkeypatch):
    """A real one-node Slurm cluster (:mod:`slurm_cluster`); skipped where Slurm is not installed."""
    from slurm_cluster import missing_programs, slurm_cluster

    missing = missing_programs()
    if "slurmctld" in missing:
        pytest.skip("Slurm is not installed (apt-get install slurm-wlm slurmdbd mariadb-server)")
    if os.geteuid() != 0:
        pytest.skip("the test's Slurm daemons run as root")
    assert not missing, f"Slurm is installed without {', '.join(missing)} (apt-get install slurm-wlm slurmdbd mariadb-server)"
    with slurm_cluster() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield


def test_a_sweep_on_a_real_slurm_cluster_survives_a_killed_job_with_the_local_results(slurm, reference_sweep, tmp_path, cli):
    data = reference_sweep.parent / "data"
    sweep, cells = tmp_path / "sweep", [("L1", 0), ("L1", 1)]
    outcome, ((label, seed), pid, _) = _sweep(write_spec(tmp_path, data, spec_text(data=str(data), rows=L1_ONLY)), sweep,
                                              partition="debug", time=10)
    assert not outcome.failed, outcome.failed
    folder = folder_of(sweep, label, seed)
    state = json.loads((folder / "cell.json").read_text())
    assert state["status"] == "done" and state["backend"] == "slurm" and state["pid"] != pid
    ids = sorted(int(p.name.split("_")[0]) for p in (folder / "slurm").glob("*_0_log.out"))
    assert len(ids) == 2, ids  # the killed job and its resubmission
    expected, deadline = [f"{ids[0]}|FAILED", f"{ids[1]}|COMPLETED"], time.monotonic() + 60
    while True:  # Slurm's own account of the two jobs (the second may still be exiting after writing its result)
        sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(map(str, ids))], capture_output=True,
                               text=True, check=True).stdout.split()
        if sacct == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sacct == expected
    assert_same_results(sweep, reference_sweep, cells)
    # a partition the cluster does not have: sbatch's refusal in one line, before any cell runs
    res = cli("sweep", "run", write_spec(tmp_path / "other", data), "--out", tmp_path / "other" / "sweep", "--backend", "slurm",
              "--partition", "nope", "--time", "5")
    assert res.code == 1 and res.stderr.count("\n") == 1, res
    assert res.stderr.startswith("error: --backend slurm: the job of L1 seed 0 was refused: ") and "invalid partition" in res.stderr.lower()


def test_the_sbatch_script_carries_the_options(reference_sweep, tmp_path, monkeypatch):
    from p2ptools.sweep.backends import get_backend
    from p2ptools.sweep.store import read_stored

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as where srun exists
    stored = read_stored(reference_sweep)  # threads 1, device cpu

    def flags(**options) -> list[str]:
        backend = get_backend("slurm", time=90, **options)
        script = backend._executor(tmp_path, 1, backend._gpus(stored))._make_submission_file_text("CMD", "uid")
        return sorted(line for line in script.splitlines() if line.startswith("#SBATCH") and "_log." not in line)

    common = ["#SBATCH --cpus-per-task=1", "#SBATCH --job-name=p2ptools-sweep", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
              "#SBATCH --open-mode=append", "#SBATCH --signal=USR2@90", "#SBATCH --time=90", "#SBATCH --wckey=submitit"]
    assert flags() == common  # a CPU spec asks for no GPU; no partition or account: the cluster's defaults
    assert flags(partition="gpu", account="lab", gpus_per_job=2) == sorted(
        [*common, "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --gpus-per-node=2"])
    gpu_spec = {**stored, "rows": [{**row, "options": {**row["options"], "device": "auto"}} for row in stored["rows"]]}
    assert get_backend("slurm", time=90)._gpus(gpu_spec) == 1  # a spec that trains on a GPU: one per job
