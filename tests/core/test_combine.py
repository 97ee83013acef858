"""The generic combine builder: pixels, every error path, parallel output, resume after SIGKILL."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from p2p_testutils import build_then_sigkill
from p2ptools.pairs import load_manifest, read_pair, verify_dataset


def _img(rng, h=16, w=16, c=3):
    return rng.integers(0, 255, (h, w, c) if c else (h, w), dtype=np.uint8)


@pytest.fixture
def ab(tmp_path: Path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        (tmp_path / "A" / split).mkdir(parents=True)
        (tmp_path / "B" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "A" / split / f"{i}.png"), _img(rng))
            cv2.imwrite(str(tmp_path / "B" / split / f"{i}.png"), _img(rng))
    return tmp_path


def _combine(cli, root: Path, out: str = "out", *extra: str):
    return cli("make-dataset", "combine", "--source-a", root / "A", "--source-b", root / "B", "--out", root / out, "--workers", "1", *extra)


def test_combine_pixels_names_manifest(ab: Path, cli):
    res = _combine(cli, ab, "out", "--format", "png")
    assert res.code == 0, res.stderr
    assert "train 4, val 2" in res.stdout
    a, b = read_pair(ab / "out/train/3.png")
    assert (a == cv2.cvtColor(cv2.imread(str(ab / "A/train/3.png")), cv2.COLOR_BGR2RGB)).all()
    assert (b == cv2.cvtColor(cv2.imread(str(ab / "B/train/3.png")), cv2.COLOR_BGR2RGB)).all()
    manifest = load_manifest(ab / "out")
    assert manifest.counts == {"train": 4, "val": 2} and manifest.builder == {"name": "combine", "version": "1"}
    assert manifest.pairs[0].sources == [str(ab / "A/train/0.png"), str(ab / "B/train/0.png")]
    assert manifest.image_size == [16, 16] and verify_dataset(ab / "out").ok
    assert not list((ab / "out").glob(".p2ptools-*"))  # bookkeeping removed when finished
    again = _combine(cli, ab, "out", "--format", "png")
    assert again.code == 0 and "train 4, val 2" in again.stdout


def test_gray_and_alpha_become_rgb(tmp_path: Path, cli):
    rng = np.random.default_rng(1)
    for d in ("A", "B"):
        (tmp_path / d).mkdir()
    gray = _img(rng, c=0)
    rgba = _img(rng, c=4)
    cv2.imwrite(str(tmp_path / "A/x.png"), gray)
    cv2.imwrite(str(tmp_path / "B/x.png"), rgba)
    res = cli("make-dataset", "combine", "--source-a", tmp_path / "A", "--source-b", tmp_path / "B", "--split", "test", "--out", tmp_path / "o", "--format", "png")
    assert res.code == 0, res.stderr
    a, b = read_pair(tmp_path / "o/test/x.png")
    assert a.shape == (16, 16, 3) and (a[..., 0] == gray).all() and (a[..., 2] == gray).all()
    assert (b == cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGB)).all()


def _assert_clean_failure(res, out: Path, *needles: str):
    assert res.code == 1, res.stdout + res.stderr
    line = res.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    assert not list(out.rglob(".tmp-*")) if out.exists() else True


def test_missing_partner(ab: Path, cli):
    (ab / "B/train/2.png").unlink()
    res = _combine(cli, ab)
    _assert_clean_failure(res, ab / "out", "A/train/2.png", "missing partner")


def test_corrupt_jpeg(ab: Path, cli):
    (ab / "A/train/1.png").unlink()
    (ab / "A/train/1.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 50 + b"\xff\xd9")
    res = _combine(cli, ab)
    _assert_clean_failure(res, ab / "out", "A/train/1.jpg", "not a readable image")
    assert not (ab / "out/train/1.jpg").exists()


def test_truncated_png(ab: Path, cli):
    data = (ab / "B/val/0.png").read_bytes()
    (ab / "B/val/0.png").write_bytes(data[: len(data) // 2])
    res = _combine(cli, ab)
    _assert_clean_failure(res, ab / "out", "B/val/0.png", "truncated PNG")
    assert not (ab / "out/val/0.jpg").exists()


def test_size_mismatch_and_resize(ab: Path, cli):
    cv2.imwrite(str(ab / "B/train/0.png"), _img(np.random.default_rng(2), 20, 24))
    res = _combine(cli, ab)
    _assert_clean_failure(res, ab / "out", "B/train/0.png", "size 24x20 differs", "use --resize N")
    ok = _combine(cli, ab, "resized", "--resize", "8")
    assert ok.code == 0, ok.stderr
    a, b = read_pair(ab / "resized/train/0.jpg")
    assert a.shape == b.shape == (8, 8, 3)


def test_odd_width_pair_is_rejected_by_the_reader(tmp_path: Path, cli):
    (tmp_path / "d/train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "d/train/odd.png"), np.zeros((8, 15, 3), np.uint8))
    (tmp_path / "d/manifest.json").write_text("{}")
    from p2ptools.errors import InputFileError

    with pytest.raises(InputFileError, match=r"odd\.png: odd width 15"):
        read_pair(tmp_path / "d/train/odd.png")


def test_skip_bad_lists_items_in_manifest(ab: Path, cli):
    (ab / "B/train/2.png").unlink()
    (ab / "A/val/1.png").write_bytes(b"junk")
    res = _combine(cli, ab, "out", "--skip-bad")
    assert res.code == 0 and "2 skipped" in res.stdout
    manifest = load_manifest(ab / "out")
    assert manifest.counts == {"train": 3, "val": 1}
    errors = {(s.split, s.name): s.error for s in manifest.skipped}
    assert "missing partner" in errors[("train", "2")] and "not a readable image" in errors[("val", "1")]


def test_parallel_output_equals_serial(ab: Path, cli):
    assert _combine(cli, ab, "serial").code == 0
    res = cli("make-dataset", "combine", "--source-a", ab / "A", "--source-b", ab / "B", "--out", ab / "par", "--workers", "2")
    assert res.code == 0
    for f in (ab / "serial").rglob("*.jpg"):
        assert f.read_bytes() == (ab / "par" / f.relative_to(ab / "serial")).read_bytes()


def test_other_options_refused_without_overwrite(ab: Path, cli):
    assert _combine(cli, ab).code == 0
    res = _combine(cli, ab, "out", "--quality", "50")
    assert res.code == 1 and "holds a dataset built with other options; use --overwrite" in res.stderr
    assert _combine(cli, ab, "out", "--quality", "50", "--overwrite").code == 0
    assert load_manifest(ab / "out").options["build"]["quality"] == 50
    (ab / "foreign").mkdir()
    (ab / "foreign/notes.txt").write_text("mine")
    res = _combine(cli, ab, "foreign")
    assert res.code == 1 and "not empty" in res.stderr and (ab / "foreign/notes.txt").exists()


def test_resume_after_sigkill(tmp_path: Path):
    rng = np.random.default_rng(3)
    n = 300
    for d in ("A", "B"):
        (tmp_path / d / "train").mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"A/train/{i:04d}.png"), _img(rng, 64, 64))
        cv2.imwrite(str(tmp_path / f"B/train/{i:04d}.png"), _img(rng, 64, 64))
    args = [sys.executable, "-m", "p2ptools", "make-dataset", "combine", "--source-a", str(tmp_path / "A"), "--source-b", str(tmp_path / "B"), "--workers", "1"]
    ref = subprocess.run(args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    build_then_sigkill(args + ["--out", str(out)], out, pairs=40)
    done_before = len(list((out / "train").glob("*.jpg")))
    assert 40 <= done_before < n, "the build must be interrupted mid-way"
    assert not (out / "manifest.json").exists()
    resumed = subprocess.run(args + ["--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.rglob(".tmp-*")) and not list(out.glob(".p2ptools-*"))
    ref_files = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.jpg"))
    assert ref_files == sorted(p.relative_to(out) for p in out.rglob("*.jpg")) and len(ref_files) == n
    for rel in ref_files:
        assert (out / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes()
    ref_m = json.loads((tmp_path / "ref/manifest.json").read_text())
    new_m = json.loads((out / "manifest.json").read_text())
    assert ref_m["pairs"] == new_m["pairs"]


def test_bad_item_stops_parallel_workers_cleanly(ab: Path, cli):
    """With worker processes, a bad item must still stop the build with one line and no partial file."""
    (ab / "A/val/1.png").write_bytes(b"junk")
    res = cli("make-dataset", "combine", "--source-a", ab / "A", "--source-b", ab / "B", "--out", ab / "out", "--workers", "2")
    _assert_clean_failure(res, ab / "out", "A/val/1.png", "not a readable image")
    fixed = cv2.imwrite(str(ab / "A/val/1.png"), _img(np.random.default_rng(9)))
    assert fixed
    resumed = cli("make-dataset", "combine", "--source-a", ab / "A", "--source-b", ab / "B", "--out", ab / "out", "--workers", "2")
    assert resumed.code == 0 and verify_dataset(ab / "out").ok


def test_benchmark_runs_and_writes_what_the_baseline_writes(tmp_path: Path):
    """benchmarks/combine.py end to end on toy settings: its three runs agree to the byte (the
    speed numbers are not asserted: speed is measured by running the benchmark, never in tests)."""
    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "combine.py"
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(bench), "--pairs", "24", "--size", "32", "--repeats", "2",
                           "--workdir", str(tmp_path), "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["identical_bytes"] is True and report["pairs"] == 24 and report["repeats"] == 2
    assert report["ratio_range"][0] <= report["ratio"] <= report["ratio_range"][1]
    assert min(report[k] for k in ("baseline_pairs_per_s", "ours_pairs_per_s", "ceiling_pairs_per_s")) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # its temporary folder is gone
