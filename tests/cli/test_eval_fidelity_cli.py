"""``p2ptools eval --fid --kid --lpips``: reports, tables, --shard + ``eval merge``, and every bad
input as one line with exit code 1 and no report. The Inception is a cheap stand-in except in
one end-to-end run of the real network (its parity: tests/metrics/test_inception.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from p2ptools.imageio import write_image

_spec = importlib.util.spec_from_file_location("_p2p_fidelity_helpers", Path(__file__).resolve().parents[1] / "eval" / "test_fidelity.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
TinyExtractor, make_set = _helpers.TinyExtractor, _helpers.make_set
_spec_eval = importlib.util.spec_from_file_location("_p2p_eval_helpers_fid", Path(__file__).resolve().parents[1] / "eval" / "conftest.py")
_helpers_eval = importlib.util.module_from_spec(_spec_eval)
_spec_eval.loader.exec_module(_helpers_eval)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_inception(monkeypatch, tmp_path):
    """The Inception network replaced by the 16-d stand-in (weights file still required and hashed)."""
    from p2ptools.metrics import inception

    info = {"path": "w", "sha256": "1" * 64, "published_name": "pt_inception-2015-12-05-6726825d.pth", "matches_published": False}
    monkeypatch.setattr(inception, "load_inception", lambda path: (None, {**info, "path": str(path)}))
    monkeypatch.setattr(inception, "FeatureExtractor", lambda net, protocol, device: TinyExtractor())
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"stand-in")
    return weights


def fidelity_args(weights, alexnet_file, *extra):
    return ["--fid", "--kid", "--lpips", "--inception-weights", weights, "--lpips-backbone-weights", alexnet_file, "--kid-subsets", "4", "--kid-subset-size", "3", "--no-progress", *extra]


def test_report_with_all_three(cli, tmp_path, tiny_inception, alexnet_file):
    res = make_set(tmp_path / "res", n=5)
    r = cli("eval", "--results", res, *fidelity_args(tiny_inception, alexnet_file), "--out", tmp_path / "rep")
    assert r.code == 0, r.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["n_images"] == 5 and rep["fid"]["value"] > 0 and rep["kid"]["subset_size"] == 3 and rep["kid"]["subsets"] == 4
    assert rep["fid"]["weights"]["sha256"] == "1" * 64 and rep["fid"]["protocol"] == "clean"
    assert "(< 2048)" in rep["fid"]["warning"] and "compare runs by KID" in r.stderr
    assert rep["lpips"]["n_images"] == 5 and len(rep["lpips"]["weights"]["backbone"]["sha256"]) == 64
    assert rep["image"]["ssim"] is not None  # the existing image metrics still come along
    assert sorted(p.name for p in (tmp_path / "rep" / "features").iterdir()) == ["results.rank0-of-1.npy", "truth.rank0-of-1.npy"]
    rows = (tmp_path / "rep" / "lpips_per_image.csv").read_text().splitlines()
    assert rows[0] == "name,lpips" and len(rows) == 6
    values = [float(line.split(",")[1]) for line in rows[1:]]
    assert values == sorted(values, reverse=True) and np.mean(values) == pytest.approx(rep["lpips"]["mean"], abs=1e-7)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Worst 5 by LPIPS" in html and "lower is better" in html and "worst/000_output.png" in html
    assert (tmp_path / "rep" / "worst" / "000_input.png").is_file()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "FID ↓" in md and f"{rep['kid']['mean']:.4f} ± {rep['kid']['std']:.4f}" in md and "sha256" in md
    assert "FID ↓" in r.stdout and "LPIPS ↓" in r.stdout


def test_ablation_table_columns(cli, tmp_path, tiny_inception, alexnet_file):
    a, b = make_set(tmp_path / "l1", n=4, seed=1), make_set(tmp_path / "l1cgan", n=4, seed=1)
    write_image(b / "img0.png", np.zeros((32, 32, 3), np.uint8))  # the second row differs
    r = cli("eval", "--results", a, "--results", b, *fidelity_args(tiny_inception, alexnet_file), "--out", tmp_path / "table")
    assert r.code == 0, r.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "table" / "table.csv", index_col=0)
    assert {"FID ↓", "KID ↓", "KID std", "LPIPS ↓"} <= set(table.columns) and list(table.index) == ["l1", "l1cgan"]
    for row in ("l1", "l1cgan"):
        rep = json.loads((tmp_path / "table" / row / "report.json").read_text())
        assert table.loc[row, "FID ↓"] == pytest.approx(rep["fid"]["value"], rel=1e-5)
        assert table.loc[row, "KID std"] == pytest.approx(rep["kid"]["std"], rel=1e-5, abs=1e-9)
    assert table.loc["l1cgan", "LPIPS ↓"] > table.loc["l1", "LPIPS ↓"]
    second = json.loads((tmp_path / "table" / "l1cgan" / "report.json").read_text())
    assert second["fid"]["ground_truth_cached_shares"] == 1  # one test split: its statistics computed once
    assert "±" in (tmp_path / "table" / "table.md").read_text() and "lower is better" in (tmp_path / "table" / "table.html").read_text()
    assert "$\\downarrow$" in (tmp_path / "table" / "table.tex").read_text()
    assert (tmp_path / "table" / "l1" / "features" / "results.rank0-of-1.npy").is_file()


def test_issue23_merge_never_replaces_a_users_folder_with_a_report_json(cli, tmp_path, tiny_inception, alexnet_file):
    res = make_set(tmp_path / "res", n=3)
    args = fidelity_args(tiny_inception, alexnet_file)
    for i in range(2):
        assert cli("eval", "--results", res, *args, "--shard", f"{i}/2", "--out", tmp_path / f"part{i}").code == 0
    user = tmp_path / "user"
    user.mkdir()
    (user / "report.json").write_text("{}")
    (user / "notes.txt").write_text("keep")
    r = cli("eval", "merge", tmp_path / "part0", tmp_path / "part1", "--out", user, "--overwrite")
    assert r.code == 1 and "holds no p2ptools evaluation" in r.stderr, r.stderr
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "report.json"] and (user / "report.json").read_text() == "{}"


def test_shards_and_merge_write_the_single_run_report(cli, tmp_path, tiny_inception, alexnet_file):
    res = make_set(tmp_path / "res", n=5)
    args = fidelity_args(tiny_inception, alexnet_file)
    assert cli("eval", "--results", res, *args, "--out", tmp_path / "single").code == 0
    for i in range(2):
        r = cli("eval", "--results", res, *args, "--shard", f"{i}/2", "--out", tmp_path / f"part{i}")
        assert r.code == 0, r.stderr
        assert "partial state" in r.stdout and not (tmp_path / f"part{i}" / "report.json").exists()
    assert cli("eval", "--results", res, *args, "--shard", "1/2", "--out", tmp_path / "part1").code == 0  # a shard can be rerun
    r = cli("eval", "merge", tmp_path / "part1", tmp_path / "part0", "--out", tmp_path / "merged")
    assert r.code == 0, r.stderr
    single = json.loads((tmp_path / "single" / "report.json").read_text())
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert merged["n_images"] == single["n_images"] == 5
    for key in ("fid", "kid", "lpips", "image"):
        assert merged[key].keys() == single[key].keys()
    assert merged["fid"]["value"] == pytest.approx(single["fid"]["value"], rel=1e-6)  # the sums to 1e-9: tests/eval/test_fidelity.py; singular covariances amplify
    assert merged["kid"]["mean"] == pytest.approx(single["kid"]["mean"], rel=1e-9)
    assert merged["lpips"]["mean"] == pytest.approx(single["lpips"]["mean"], rel=1e-12)
    assert merged["image"]["ssim"] == pytest.approx(single["image"]["ssim"], rel=1e-12)
    assert (tmp_path / "merged" / "lpips_per_image.csv").read_text() == (tmp_path / "single" / "lpips_per_image.csv").read_text()
    r = cli("eval", "merge", tmp_path / "part0", "--out", tmp_path / "half")
    assert r.code == 1 and "shards 0..1 of 2" in r.stderr and not (tmp_path / "half").exists()
    assert not [p for p in (tmp_path / "merged").rglob("*") if p.is_file() and b".p2ptools-new" in p.read_bytes()]  # built beside, no trace
    r = cli("eval", "merge", tmp_path / "part1", tmp_path / "part0", "--out", tmp_path / "merged")
    assert r.code == 1 and "holds an evaluation already" in r.stderr  # replaced only with --overwrite
    assert cli("eval", "merge", tmp_path / "part1", tmp_path / "part0", "--out", tmp_path / "merged", "--overwrite").code == 0
    assert json.loads((tmp_path / "merged" / "report.json").read_text()) == merged
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_real_inception_end_to_end(cli, tmp_path, inception_file):
    res = make_set(tmp_path / "res", n=2, size=(16, 16))
    r = cli("eval", "--results", res, "--kid", "--inception-weights", inception_file, "--fid-protocol", "legacy", "--kid-subsets", "2", "--no-progress", "--out", tmp_path / "rep")
    assert r.code == 0, r.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["kid"]["subset_size"] == 2 and rep["kid"]["protocol"] == "legacy" and "fid" not in rep
    feats = np.load(tmp_path / "rep" / "features" / "results.rank0-of-1.npy")
    assert feats.shape == (2, 2048) and feats.std() > 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("no-weights", "^error: --fid and --kid need local weights: pass --inception-weights pt_inception-2015-12-05-6726825d.pth \\(the public copy: https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth; nothing is downloaded\\)$"),
        ("junk-weights", "junk.pth: not a torch weights file"),
        ("no-lpips-weights", "--lpips needs local weights: pass --lpips-backbone-weights alexnet-owt-7be5be79.pth"),
        ("counts", "3 ground-truth photos for 2 results"),
        ("empty", "no result images found"),
        ("shard", "--shard: expected I/N"),
        ("protocol", "--fid-protocol: invalid value 'bilinear'"),
    ],
)
def test_bad_input_is_one_line_and_no_report(cli, tmp_path, case, message, alexnet_file):
    res = make_set(tmp_path / "res", n=3)
    args = ["--results", res, "--no-progress", "--out", tmp_path / "rep"]
    if case == "no-weights":
        args += ["--fid"]
    elif case == "junk-weights":
        (tmp_path / "junk.pth").write_bytes(b"junk")
        args += ["--fid", "--inception-weights", tmp_path / "junk.pth"]
    elif case == "no-lpips-weights":
        args += ["--lpips"]
    elif case == "counts":
        (res / "img2.png").unlink()
        args += ["--lpips", "--lpips-backbone-weights", alexnet_file]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args = ["--results", tmp_path / "empty", "--kid", "--no-progress", "--out", tmp_path / "rep"]
    elif case == "shard":
        args += ["--kid", "--shard", "2"]
    elif case == "protocol":
        args += ["--fid", "--fid-protocol", "bilinear"]
    r = cli("eval", *args)
    assert r.code == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    import re

    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "rep").exists()


def test_runs_table_with_fcn_and_all_fidelity_columns(cli, tmp_path, monkeypatch, tiny_inception, alexnet_file):
    """The issue's command: eval --runs A B --fid --kid --lpips --fcn -> one table with every column."""
    from p2ptools_pix2pix._template import ColorMapOptions, ColorMapPlugin

    import p2ptools.eval.scorer as scorer_mod
    from p2ptools import registry
    from p2ptools.labels import CITYSCAPES
    from p2ptools.pairs import FORMAT_ID, Manifest, PairRecord, write_pair
    from p2ptools.plugin import TrainRequest

    monkeypatch.setattr(scorer_mod, "load_scorer", lambda *a, **k: _helpers_eval.FakeScorer())
    real_load = registry.load
    monkeypatch.setattr(registry, "load", lambda kind, name: ColorMapPlugin if name == ColorMapPlugin.name else real_load(kind, name))
    rng = np.random.default_rng(1)
    data, records = tmp_path / "data", []
    for split, count in (("train", 2), ("test", 3)):
        for i in range(count):
            ids = _helpers_eval.random_train_ids(rng, (32, 32), ignore_frac=0.0)
            a = CITYSCAPES.render(ids)
            b = np.clip(a.astype(int) // 2 + 40 + rng.integers(0, 30, a.shape), 0, 255).astype(np.uint8)
            write_pair(data / split / f"{split}{i}.png", a, b)
            write_image(data / "labels" / split / f"{split}{i}.png", ids)
            records.append(PairRecord(split, f"{split}{i}", f"{split}/{split}{i}.png", [f"{split}{i}"], "x", {"labels": {"file": f"labels/{split}/{split}{i}.png", "sha256": "x"}}))
    Manifest({"name": "t", "version": "1"}, {}, [], [32, 32], "png", records, format=FORMAT_ID).write(data)
    runs = [ColorMapPlugin().train(ColorMapOptions(max_images=k), TrainRequest(data=data, run_dir=tmp_path / f"run{k}")) for k in (1, 2)]
    (tmp_path / "w.safetensors").write_bytes(b"x")
    r = cli("eval", "--runs", *runs, "--fcn", "--fcn-weights", tmp_path / "w.safetensors", *fidelity_args(tiny_inception, alexnet_file), "--out", tmp_path / "t1")
    assert r.code == 0, r.stderr
    header = (tmp_path / "t1" / "table.csv").read_text().splitlines()[0].split(",")
    assert header == ["max_images", "Per-pixel acc.", "Per-class acc.", "Class IOU", "L1 (0-255)", "PSNR (dB)", "SSIM", "FID ↓", "KID ↓", "KID std", "LPIPS ↓"]
    assert "±" in (tmp_path / "t1" / "table.md").read_text()


def test_lpips_on_images_too_small_for_alexnet(cli, tmp_path, alexnet_file):
    res = make_set(tmp_path / "res", n=2, size=(16, 16))
    r = cli("eval", "--results", res, "--lpips", "--lpips-backbone-weights", alexnet_file, "--no-progress", "--out", tmp_path / "rep")
    assert r.code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "img0.png: LPIPS needs images of at least 31x31" in r.stderr and not (tmp_path / "rep").exists()
