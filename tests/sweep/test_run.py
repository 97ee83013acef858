"""A tiny sweep end to end through the local backend: the table against cells.csv, reruns, a
changed spec, a failing cell, the HTML page in a real browser."""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from sweep_specs import ROWS, spec_text, write_spec

from p2p_testutils import make_dataset, tree_bytes
from p2ptools.sweep.store import cell_dir, read_stored


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_table_is_mean_and_std_of_cells_csv(reference_sweep):
    cells = _csv(reference_sweep / "cells.csv")
    assert sorted((c["row"], c["seed"]) for c in cells) == [("L1", "0"), ("L1", "1"), ("L1+cGAN", "0"), ("L1+cGAN", "1")]
    columns = [c for c in cells[0] if c not in ("row", "seed")]
    assert {"Color L", "Color a", "Color b", "L1 (0-255)", "PSNR (dB)", "SSIM"} <= set(columns)
    # each cell's numbers are its own evaluation's (report.json), not recomputed elsewhere
    report = json.loads((cell_dir(reference_sweep, "L1+cGAN", 1) / "eval" / "report.json").read_text())
    cgan1 = next(c for c in cells if c["row"] == "L1+cGAN" and c["seed"] == "1")
    assert float(cgan1["Color a"]) == pytest.approx(report["color"]["a"], abs=1e-6)
    assert float(cgan1["SSIM"]) == pytest.approx(report["image"]["ssim"], abs=1e-6)
    table = {r["Row"]: r for r in _csv(reference_sweep / "table.csv")}
    md = (reference_sweep / "table.md").read_text()
    for label in ("L1", "L1+cGAN"):
        assert table[label]["seeds"] == "2"
        for column in columns:
            values = [float(c[column]) for c in cells if c["row"] == label]
            mean, std = statistics.fmean(values), statistics.stdev(values)
            assert float(table[label][column]) == pytest.approx(mean, abs=2e-6)
            assert float(table[label][f"{column} std"]) == pytest.approx(std, abs=2e-6)
            assert f"{mean:.3f} ± {std:.3f}" in md.split(f"| {label} |")[1].splitlines()[0]
    assert "Mean ± std over seeds 0, 1." in md
    for name in ("table.tex", "table.html"):
        assert "±" in (reference_sweep / name).read_text() or "\\pm" in (reference_sweep / name).read_text()


def test_bold_only_where_the_lead_exceeds_the_spread():
    import pandas as pd

    from p2ptools.sweep.results import bold_rows, shown_frame

    means = pd.DataFrame({"SSIM": [0.50, 0.40, 0.30], "L1 (0-255)": [10.0, 12.0, 9.0]}, index=["a", "b", "c"])
    stds = pd.DataFrame({"SSIM": [0.04, 0.05, 0.01], "L1 (0-255)": [1.0, 0.5, 0.6]}, index=["a", "b", "c"])
    # SSIM: a leads b by 0.10 > 0.04 + 0.05: bold. L1 (lower is better): c leads a by 1.0 < 0.6 + 1.0: no bold
    assert bold_rows(means, stds) == {"SSIM": "a"}
    shown = shown_frame(means, stds, bold_rows(means, stds), lambda t: f"**{t}**")
    assert shown.loc["a", "SSIM"] == "**0.500 ± 0.040**" and shown.loc["c", "L1 (0-255)"] == "9.000 ± 0.600"
    stds.loc["a", "SSIM"] = 0.06  # 0.50 - 0.06 = 0.44 < 0.40 + 0.05: the intervals overlap
    assert bold_rows(means, stds) == {}
    stds.loc[["a", "b"], "SSIM"] = float("nan")  # one seed: no spread to compare
    assert bold_rows(means, stds) == {}


def test_rerun_skips_every_cell_and_rewrites_nothing(reference_sweep, cli):
    before = _mtimes(reference_sweep)
    res = cli("sweep", "run", reference_sweep.parent / "spec.toml", "--out", reference_sweep, "--no-progress")
    assert res.code == 0, res
    assert "4/4 cells done (0 run now)" in res.stdout
    assert _mtimes(reference_sweep) == before


def test_status_shows_every_cell(reference_sweep, cli):
    res = cli("sweep", "status", reference_sweep)
    assert res.code == 0, res
    assert "tiny: 4/4 cells done" in res.stdout
    assert "| L1 | done | done |" in res.stdout and "| L1+cGAN | done | done |" in res.stdout


def test_changed_spec_refused_then_overwrite_keeps_unchanged_cells_and_a_failing_row_fails_alone(reference_sweep, tmp_path, cli):
    folder = tmp_path / "copy"
    shutil.copytree(reference_sweep.parent, folder, symlinks=True)
    sweep = folder / "sweep"
    broken = make_dataset(folder / "broken", train=2, val=1, size=32)
    (broken / "train" / "000.png").write_bytes(b"not a png")  # the row's training fails at its data check
    rows = ROWS.replace('label = "L1+cGAN"\nloss = "l1+cgan"', 'label = "L1+cGAN"\nloss = "l1+cgan"\nlambda-l1 = 10.0')
    rows += '\n[[rows]]\nlabel = "broken"\nloss = "l1"\ndata = "broken"\n'
    data = reference_sweep.parent / "data"  # the reference's dataset: its rows' data did not change
    spec = write_spec(folder, data, spec_text(data=str(data), rows=rows))
    kept = {seed: tree_bytes(cell_dir(sweep, "L1", seed)) for seed in (0, 1)}
    kept_times = {seed: _mtimes(cell_dir(sweep, "L1", seed)) for seed in (0, 1)}

    refused = cli("sweep", "run", spec, "--out", sweep, "--no-progress")
    assert refused.code == 1 and "\n" not in refused.stderr.strip(), refused
    assert "holds a sweep of another spec (" in refused.stderr and "row 'L1+cGAN' options" in refused.stderr
    assert "row 'broken' added" in refused.stderr and "--overwrite" in refused.stderr
    assert read_stored(sweep)["rows"][1]["options"].get("lambda_l1") is None  # nothing changed

    res = cli("sweep", "run", spec, "--out", sweep, "--overwrite", "--no-progress")
    assert res.code == 1, res  # a cell failed
    assert "4/6 cells done (4 run now)" in res.stdout
    assert "broken seed 0: failed: " in res.stdout and "000.png" in res.stdout
    for seed in (0, 1):  # unchanged cells are kept as they were, byte for byte, untouched
        assert tree_bytes(cell_dir(sweep, "L1", seed)) == kept[seed]
        assert _mtimes(cell_dir(sweep, "L1", seed)) == kept_times[seed]
        config = json.loads((cell_dir(sweep, "L1+cGAN", seed) / "run" / "config.json").read_text())
        assert config["options"]["lambda_l1"] == 10.0 and config["options"]["seed"] == seed  # redone with the new options
    status = cli("sweep", "status", sweep)
    assert "| broken | failed | failed |" in status.stdout
    assert "broken seed 1: failed: " in status.stdout and "000.png" in status.stdout
    state = json.loads((cell_dir(sweep, "broken", 0) / "cell.json").read_text())
    assert state["status"] == "failed" and "\n" not in state["error"] and "000.png" in state["error"]
    table = {r["Row"]: r for r in _csv(sweep / "table.csv")}
    assert set(table) == {"L1", "L1+cGAN"}  # the failed row has no numbers
    assert "seed 0 failed" in (sweep / "table.html").read_text()

    # a rerun retries only the failed cells
    (broken / "train" / "000.png").unlink()
    done = {label: _mtimes(cell_dir(sweep, label, 0)) for label in ("L1", "L1+cGAN")}
    again = cli("sweep", "run", spec, "--out", sweep, "--no-progress")  # the same spec: no --overwrite needed
    assert again.code == 0, again
    assert "6/6 cells done (2 run now)" in again.stdout
    assert {label: _mtimes(cell_dir(sweep, label, 0)) for label in ("L1", "L1+cGAN")} == done
    assert {r["Row"] for r in _csv(sweep / "table.csv")} == {"L1", "L1+cGAN", "broken"}


def test_the_page_reads_well_in_a_browser(reference_sweep, tmp_path):
    from pagecheck import assert_reads_well, chromium

    chromium()
    facts = assert_reads_well(reference_sweep / "table.html", tmp_path / "table.png", min_images=6)
    shown = {i["src"] for i in facts["images"]}
    assert {"plots/SSIM.png", "plots/Color_L.png"} <= shown
    page = (reference_sweep / "table.html").read_text()
    assert "cells/L1/seed0/eval/report.html" in page and "±" in page
    assert all(math.isfinite(float(r["SSIM"])) for r in _csv(reference_sweep / "cells.csv"))


def test_a_folder_that_is_not_a_sweep_is_refused_untouched(reference_sweep, tmp_path, cli):
    spec = reference_sweep.parent / "spec.toml"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    res = cli("sweep", "run", spec, "--out", tmp_path / "mine", "--no-progress")
    assert res.code == 1 and res.stderr.count("\n") == 1 and "holds no p2ptools sweep directory" in res.stderr, res
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    inside = cli("sweep", "run", spec, "--out", reference_sweep.parent / "data" / "sweep", "--no-progress")
    assert inside.code == 1 and "is inside the input" in inside.stderr, inside
    assert not (reference_sweep.parent / "data" / "sweep").exists()
    status = cli("sweep", "status", tmp_path / "mine")
    assert status.code == 1 and "no sweep.json: not a p2ptools sweep directory" in status.stderr


def test_progress_is_a_line_per_running_cell_and_the_overall_count(reference_sweep, tmp_path, capsys):
    import os

    from p2ptools.sweep.runner import CellProgress
    from p2ptools.sweep.store import host_name, write_state

    sweep = tmp_path / "sweep"
    shutil.copytree(reference_sweep, sweep, ignore=shutil.ignore_patterns("checkpoints", "translated", "eval", "samples"))
    cell = cell_dir(sweep, "L1", 1)
    write_state(cell, {"row": "L1", "seed": 1, "status": "running", "host": host_name(), "pid": os.getpid(), "backend": "local",
                       "started": "now", "step": "train", "steps": {}})
    (cell / "run" / "log.jsonl").write_text('{"step": 3, "epoch": 2}\n')
    capsys.readouterr()
    with CellProgress(sweep, read_stored(sweep), total=4, done=3, poll=3600) as shown:  # stderr is no terminal here: plain lines
        shown.refresh()
        shown.finished(("L1", 1), {"status": "done"})
        shown.refresh()  # an ended cell gets no line again
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"L1 seed 1: 0/3 (0%) train epoch 2/2 on {host_name()} |"), lines
    assert lines[1].startswith("sweep: 4/4 (100%) |") and lines[1].endswith(", done") and len(lines) == 2, lines
