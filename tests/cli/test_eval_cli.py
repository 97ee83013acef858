"""``p2ptools eval``: reports and tables end to end, with a fake scorer and with a real (tiny,
random) FCN-8s caffemodel; every error path is one line and exit code 1."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from p2p_testutils import tree_bytes

from p2ptools import registry
from p2ptools.eval.confusion import accumulate, new_hist, scores
from p2ptools.imageio import write_image
from p2ptools.labels import CITYSCAPES
from p2ptools.pairs import FORMAT_ID, Manifest, PairRecord, write_pair

# the evaluator tests' helpers (tests/eval/conftest.py), loaded by path under a private name
_spec = importlib.util.spec_from_file_location("_p2p_eval_helpers", Path(__file__).resolve().parents[1] / "eval" / "conftest.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
FakeScorer, make_cityscapes, make_results = _helpers.FakeScorer, _helpers.make_cityscapes, _helpers.make_results
naive_hist, random_train_ids = _helpers.naive_hist, _helpers.random_train_ids
FRAMES = [f"lindau_000000_{i:06d}" for i in range(3)]


@pytest.fixture(autouse=True)
def _color_cache(tmp_path, monkeypatch):
    """Keep the Lab color-table cache out of the home folder."""
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    gts = {n: random_train_ids(rng, (32, 48)) for n in FRAMES}
    preds = {n: np.where(rng.random((32, 48)) < 0.7, g, 5).astype(np.uint8) for n, g in gts.items()}
    make_cityscapes(tmp_path / "cs", gts)
    make_results(tmp_path / "res", preds)
    return tmp_path, gts, preds


@pytest.fixture
def fake_load(monkeypatch):
    import p2ptools.eval.scorer as scorer_mod

    monkeypatch.setattr(scorer_mod, "load_scorer", lambda *a, **k: FakeScorer())


def test_fcn_report(cli, scene, fake_load):
    root, gts, preds = scene
    (root / "w.safetensors").write_bytes(b"x")
    r = cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "w.safetensors", "--out", root / "rep", "--no-progress")
    assert r.code == 0, r.stderr
    data = json.loads((root / "rep" / "report.json").read_text())
    expected = scores(naive_hist([(gts[n], preds[n]) for n in FRAMES], 19))
    assert data["fcn"]["per_pixel_acc"] == pytest.approx(expected["per_pixel_acc"])
    assert data["fcn"]["n_images"] == 3
    assert f"{expected['class_iou']:.3f}" in r.stdout and "report.html" in r.stdout
    for name in ("report.md", "report.html", "per_class.csv", "confusion.csv"):
        assert (root / "rep" / name).is_file()


def make_caffemodel(path: Path, width: float = 1 / 16) -> Path:
    from p2ptools.caffe import write_caffemodel
    from p2ptools.nets.fcn8s import caffe_layer_shapes

    rng = np.random.default_rng(0)
    layers = []
    for name, shapes in caffe_layer_shapes(20, width).items():
        fan_in = int(np.prod(shapes[0][1:]))
        blobs = [(rng.standard_normal(shapes[0]) * np.sqrt(2.0 / fan_in)).astype(np.float32)]
        blobs += [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes[1:]]
        layers.append((name, "Deconvolution" if name.startswith("upscore") else "Convolution", blobs))
    write_caffemodel(path, layers)
    return path


def test_real_fcn_scorer_end_to_end(cli, scene):
    """A generated tiny-width caffemodel, converted on first use: the report equals scoring by hand."""
    from p2ptools.eval.scorer import load_scorer

    root, gts, _ = scene
    model = make_caffemodel(root / "fcn-8s-cityscapes.caffemodel")
    r = cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", model, "--out", root / "rep", "--batch-size", "2", "--no-progress")
    assert r.code == 0, r.stderr
    from p2ptools.eval.scorer import conversion_cache_path

    assert conversion_cache_path(model).is_file()  # converted once, cached in P2PTOOLS_CACHE
    assert not (root / "fcn-8s-cityscapes.safetensors").exists()  # never beside the weights (issue 9.8)
    scorer = load_scorer(model)
    hist = new_hist(19)
    for n in FRAMES:
        result = cv2.cvtColor(cv2.imread(str(root / "res" / f"{n}_leftImg8bit.png")), cv2.COLOR_BGR2RGB)
        accumulate(hist, gts[n], scorer.predict([result], (32, 48))[0], 19)
    data = json.loads((root / "rep" / "report.json").read_text())
    assert data["fcn"]["per_pixel_acc"] == pytest.approx(scores(hist)["per_pixel_acc"])
    assert data["fcn"]["class_iou"] == pytest.approx(scores(hist)["class_iou"])
    assert data["fcn"]["scorer"]["precision"] == "fp32" and data["fcn"]["scorer"]["tf32"] is False


def _one_error_line(r, *needles):
    assert r.code == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_error_paths(cli, scene, fake_load):
    root, _, _ = scene
    weights = root / "w.safetensors"
    weights.write_bytes(b"x")
    base = ("eval", "--fcn", "--cityscapes", root / "cs", "--fcn-weights", weights, "--no-progress")
    # a result with no matching frame
    write_image(root / "res2" / "no_frame_here.png", np.zeros((8, 8, 3), np.uint8))
    _one_error_line(cli(*base, "--results", root / "res2", "--out", root / "o1"), "no_frame_here.png", "no Cityscapes frame name")
    assert not (root / "o1" / "report.json").exists()
    # an unreadable result
    (root / "res3").mkdir()
    (root / "res3" / f"{FRAMES[0]}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _one_error_line(cli(*base, "--results", root / "res3", "--out", root / "o2"), f"{FRAMES[0]}.png")
    # a size mismatch between a result and its ground-truth photo
    write_image(root / "real" / f"{FRAMES[0]}.png", np.zeros((16, 16, 3), np.uint8))
    write_image(root / "res4" / f"{FRAMES[0]}.png", np.zeros((32, 48, 3), np.uint8))
    _one_error_line(cli("eval", "--results", root / "res4", "--real", root / "real", "--out", root / "o3", "--no-progress"), f"{FRAMES[0]}.png", "48x32", "16x16")
    # missing options
    _one_error_line(cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--out", root / "o4"), "--fcn-weights")
    _one_error_line(cli("eval", "--fcn", "--results", root / "res", "--fcn-weights", weights, "--out", root / "o4"), "--cityscapes")
    _one_error_line(cli("eval", "--results", root / "res", "--out", root / "o4"), "--fcn")


def test_weights_of_another_network(cli, scene):
    from safetensors.numpy import save_file

    root, _, _ = scene
    save_file({"model.0.weight": np.zeros((64, 3, 4, 4), np.float32)}, str(root / "generator.safetensors"))
    r = cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "generator.safetensors", "--out", root / "o")
    _one_error_line(r, "generator.safetensors")
    (root / "garbage.caffemodel").write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    r = cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "garbage.caffemodel", "--out", root / "o")
    _one_error_line(r, "garbage.caffemodel")


def test_runs_are_translated_and_tabulated(cli, tmp_path, monkeypatch):
    """Two runs of the template plugin (max_images differs) -> translated test split -> table."""
    from p2ptools_pix2pix._template import ColorMapOptions, ColorMapPlugin

    from p2ptools.plugin import TrainRequest

    real_load = registry.load
    monkeypatch.setattr(registry, "load", lambda kind, name: ColorMapPlugin if name == ColorMapPlugin.name else real_load(kind, name))
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    records = []
    for split, count in (("train", 2), ("test", 2)):
        for i in range(count):
            ids = random_train_ids(rng, (16, 16), ignore_frac=0.0)
            a = CITYSCAPES.render(ids)
            b = np.clip(a.astype(int) // 2 + 40 + rng.integers(0, 5, a.shape), 0, 255).astype(np.uint8)
            name = f"{split}{i}"
            write_pair(data / split / f"{name}.png", a, b)
            write_image(data / "labels" / split / f"{name}.png", ids)
            records.append(PairRecord(split, name, f"{split}/{name}.png", [name], "x", {"labels": {"file": f"labels/{split}/{name}.png", "sha256": "x"}}))
    Manifest({"name": "t", "version": "1"}, {}, [], [16, 16], "png", records, format=FORMAT_ID).write(data)
    runs = []
    for k in (1, 2):
        runs.append(ColorMapPlugin().train(ColorMapOptions(max_images=k), TrainRequest(data=data, run_dir=tmp_path / f"run{k}")))
    r = cli("eval", "--color", "--runs", runs[0], runs[1], "--out", tmp_path / "table", "--no-progress")
    assert r.code == 0, r.stderr
    out = tmp_path / "table"
    csv = (out / "table.csv").read_text()
    assert "max_images=1" in csv and "max_images=2" in csv and "Color L" in csv and "SSIM" in csv
    for label in ("max_images=1", "max_images=2"):
        rep = json.loads((out / label / "report.json").read_text())
        assert rep["n_images"] == 2 and 0 < rep["color"]["L"] <= 1
        assert (out / label / "results" / "target" / "test0.png").is_file()
        assert f"{rep['color']['L']:.3f}" in (out / "table.md").read_text()
    for name in ("table.md", "table.tex", "table.html", "color_L.png"):
        assert (out / name).is_file()


def test_pix2pix_ablation_end_to_end(cli, tmp_path):
    """synthetic-scenes dataset -> two tiny pix2pix runs (L1, L1+cGAN) -> eval --runs with a tiny random
    FCN-8s caffemodel, the ground-truth row and colors -> one table (the layout of the paper's Table 1)."""
    data, runs = tmp_path / "data", []
    r = cli("make-dataset", "synthetic-scenes", "--out", data, "--size", "32", "--count", "6", "--test-fraction", "0.34", "--val-fraction", "0", "--workers", "1")
    assert r.code == 0, r.stderr
    for loss in ("l1", "l1+cgan"):
        run = tmp_path / f"run_{loss}"
        r = cli("train", "--model", "pix2pix", "--data", data, "--out", run, "--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--loss", loss,
                "--load-size", "32", "--crop-size", "32", "--epochs", "1", "--epochs-decay", "0", "--max-steps", "2", "--workers", "0",
                "--device", "cpu", "--no-progress")  # fmt: skip
        assert r.code == 0, r.stderr
        runs.append(run)
    model = make_caffemodel(tmp_path / "fcn.caffemodel")
    out = tmp_path / "table"
    r = cli("eval", "--fcn", "--color", "--ground-truth-row", "--runs", *runs, "--fcn-weights", model, "--out", out, "--no-progress")
    assert r.code == 0, r.stderr
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("Loss,Per-pixel acc.,Per-class acc.,Class IOU,Color L")
    assert [line.split(",")[0] for line in table[1:]] == ["L1", "L1+cGAN", "Ground truth"]
    for label in ("L1", "L1+cGAN"):
        rep = json.loads((out / label / "report.json").read_text())
        assert rep["n_images"] == 2 and "label maps of the dataset" in rep["fcn"]["labels"]
        assert f"{rep['fcn']['per_pixel_acc']:.3f}" in (out / "table.md").read_text()
        assert len(list((out / label / "results").glob("*.png"))) == 2
    assert "L1+cGAN" in r.stdout and "Ground truth" in r.stdout


def test_seg_with_color_label_folder(cli, tmp_path):
    """--seg: results are color label maps (photo -> labels), ground truth color PNGs via --labels."""
    rng = np.random.default_rng(2)
    expected = []
    for i in range(2):
        gt = random_train_ids(rng, (24, 24), ignore_frac=0.0)
        pred = np.where(rng.random((24, 24)) < 0.5, gt, 0).astype(np.uint8)
        write_image(tmp_path / "labels" / f"img{i}.png", CITYSCAPES.render(gt))
        write_image(tmp_path / "res" / f"img{i}.png", CITYSCAPES.render(pred))
        expected.append((gt, pred))
    r = cli("eval", "--seg", "--results", tmp_path / "res", "--labels", tmp_path / "labels", "--out", tmp_path / "rep", "--no-progress")
    assert r.code == 0, r.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["seg"]["per_pixel_acc"] == pytest.approx(scores(naive_hist(expected, 19))["per_pixel_acc"])
    assert rep["seg"]["class_iou"] == pytest.approx(scores(naive_hist(expected, 19))["class_iou"])


# -- issue 9: an evaluation is replaced only with --overwrite, only once complete ---------------------



def test_rerun_needs_overwrite_replaces_when_complete_and_keeps_a_users_files(cli, scene, fake_load):
    root, _, _ = scene
    (root / "w.safetensors").write_bytes(b"x")
    args = ("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "w.safetensors",
            "--out", root / "rep", "--no-progress")  # fmt: skip
    assert cli(*args).code == 0
    before = tree_bytes(root / "rep")
    assert not [name for name, data in before.items() if b".p2ptools-new" in data]  # no staging path leaks into the report
    _one_error_line(cli(*args), f"--out {root / 'rep'}", "holds an evaluation already", "--overwrite")
    assert tree_bytes(root / "rep") == before
    (root / "rep" / "my-notes.txt").write_text("the user's")
    (root / "res" / f"{FRAMES[1]}_leftImg8bit.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the new evaluation fails
    _one_error_line(cli(*args, "--overwrite"), f"{FRAMES[1]}_leftImg8bit.png", "truncated")
    assert tree_bytes(root / "rep") == {**before, "my-notes.txt": b"the user's"}
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    make_results(root / "res", {n: np.zeros((32, 48), np.uint8) for n in FRAMES[1:2]})
    assert cli(*args, "--overwrite").code == 0
    assert (root / "rep" / "my-notes.txt").read_text() == "the user's"  # carried into the new report, not deleted
    assert tree_bytes(root / "rep")["report.json"] != before["report.json"]
    user = root / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("x")
    _one_error_line(cli(*args[:-3], "--out", user, "--overwrite"), f"--out {user}", "holds no p2ptools evaluation")


def test_issue23_a_users_report_json_does_not_make_the_folder_an_evaluation(cli, scene, fake_load, tmp_path):
    root, _, _ = scene
    (root / "w.safetensors").write_bytes(b"x")
    user = tmp_path / "user"
    (user / "samples").mkdir(parents=True)
    (user / "report.json").write_text(json.dumps({"fcn": {"per_pixel_acc": 0.9}}))
    (user / "table.csv").write_text("a,b\n")
    (user / "samples" / "keep.png").write_bytes(b"a user's picture")
    (user / "notes.txt").write_text("keep")
    before = tree_bytes(user)
    link = tmp_path / "link"
    link.symlink_to(user)
    for out in (user, link):
        res = cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "w.safetensors",
                  "--out", out, "--no-progress", "--overwrite")  # fmt: skip
        _one_error_line(res, f"--out {out}", "holds no p2ptools evaluation", "proves nothing")
    assert tree_bytes(user) == before and link.is_symlink()


def test_issue23_overwrite_carries_a_users_files_inside_the_report_folders_over(cli, scene, fake_load):
    root, _, _ = scene
    (root / "w.safetensors").write_bytes(b"x")
    args = ("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "w.safetensors",
            "--out", root / "rep", "--no-progress")  # fmt: skip
    assert cli(*args).code == 0
    folders = sorted(p.relative_to(root / "rep") for p in (root / "rep").rglob("*") if p.is_dir())
    assert folders, "the report has folders of its own"
    kept = root / "rep" / folders[0] / "keep.txt"  # a user's file inside one of the report's own folders
    kept.write_text("the user's")
    (root / "rep" / "mine").mkdir()
    (root / "rep" / "mine" / "a.txt").write_text("the user's too")
    assert cli(*args, "--overwrite").code == 0
    assert kept.read_text() == "the user's" and (root / "rep" / "mine" / "a.txt").read_text() == "the user's too"
    assert cli(*args, "--overwrite").code == 0  # and again: carried files stay the user's, never recorded as ours
    assert kept.read_text() == "the user's"
    recorded = json.loads((root / "rep" / ".p2ptools.json").read_text())["files"]
    assert "report.json" in recorded and kept.relative_to(root / "rep").as_posix() not in recorded and "mine/a.txt" not in recorded


def test_full_disk_during_eval_is_one_line_and_leaves_the_old_report(cli, scene, fake_load, monkeypatch):
    import errno
    import os

    import p2ptools.imageio as imageio

    root, _, _ = scene
    (root / "w.safetensors").write_bytes(b"x")
    args = ("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights", root / "w.safetensors",
            "--no-progress")  # fmt: skip
    assert cli(*args, "--out", root / "rep").code == 0
    before = tree_bytes(root / "rep")

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(imageio, "_write_all", full)
    for out, extra in ((root / "new", ()), (root / "rep", ("--overwrite",))):
        line = _one_error_line(cli(*args, "--out", out, *extra), "cannot write (No space left on device)")
        assert ".p2ptools-new" in line or str(out) in line
    assert not (root / "new").exists() and tree_bytes(root / "rep") == before
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_a_bad_safetensors_scorer_is_not_called_a_caffemodel(cli, scene):
    root, _, _ = scene
    for content in (b"garbage", b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"):
        (root / "w.safetensors").write_bytes(content)
        line = _one_error_line(cli("eval", "--fcn", "--results", root / "res", "--cityscapes", root / "cs", "--fcn-weights",
                                   root / "w.safetensors", "--out", root / "o", "--no-progress"), "w.safetensors")  # fmt: skip
        assert "caffemodel" not in line and "safetensors file" in line, line
        assert not (root / "o").exists()
