"""benchmarks/gpu_check.sh --dry-run: every step of the GPU check end to end on the CPU, tiny sizes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_prints_one_table_and_writes_json(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--json", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["ok"] is True
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["cuda_tests", "ddp_syncbatch", "train_step", "fcn_scorer"]
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in steps.values())
    assert steps["cuda_tests"]["skipped"] >= 1 and steps["cuda_tests"].get("failed", 0) == 0  # no GPU: skipped, not failed
    assert steps["ddp_syncbatch"]["backend"] == "gloo" and steps["ddp_syncbatch"]["steps"] == 3
    assert [r["batch_size"] for r in steps["train_step"]["rows"]] == [1, 2]
    assert steps["fcn_scorer"]["images_per_s"] > 0 and steps["fcn_scorer"]["size"] == [64, 128]
    table = done.stdout[done.stdout.index("gpu_check on"):]
    assert all(name in table for name in steps) and "DRY RUN" in table and f"written: {out}" in table
