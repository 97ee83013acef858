"""``p2ptools fcn convert`` and ``p2ptools fcn train`` through main(): outputs, exit codes, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from p2ptools.caffe import write_caffemodel
from p2ptools.eval.scorer import load_scorer
from p2ptools.imageio import write_image
from p2ptools.labels import CITYSCAPES
from p2ptools.nets.fcn8s import caffe_layer_shapes
from p2ptools.pairs import Manifest, PairRecord, write_pair

WIDTH = 1 / 16


def fcn_layers(seed=0, width=WIDTH):
    rng = np.random.default_rng(seed)
    layers = []
    for name, shapes in caffe_layer_shapes(20, width).items():
        fan_in = int(np.prod(shapes[0][1:]))
        blobs = [rng.standard_normal(s).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in) if i == 0 else 0.1) for i, s in enumerate(shapes)]
        layers.append((name, "Deconvolution" if name.startswith("upscore") else "Convolution", blobs))
    return layers


def test_convert_new_and_v1_formats(cli, tmp_path):
    layers = fcn_layers()
    write_caffemodel(tmp_path / "new.caffemodel", [("data", "Input", [])] + layers)
    write_caffemodel(tmp_path / "old.caffemodel", [("data", "Data", [])] + layers, v1=True, legacy_shape=True, packed=False)
    preds = []
    for stem in ("new", "old"):
        res = cli("fcn", "convert", tmp_path / f"{stem}.caffemodel", "--out", tmp_path / f"{stem}.safetensors")
        assert res.code == 0, res.stderr
        assert "20 score channels" in res.stdout and "cityscapes" in res.stdout
        scorer = load_scorer(tmp_path / f"{stem}.safetensors")
        assert scorer.classes == CITYSCAPES and scorer.config.width == WIDTH
        preds.append(scorer.predict([np.full((8, 8, 3), 90, np.uint8), np.arange(192, dtype=np.uint8).reshape(8, 8, 3)], (16, 16)))
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not list(tmp_path.glob(".tmp-*"))


def _one_line_error(res, *needles):
    assert res.code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_convert_wrong_files(cli, tmp_path):
    layers = fcn_layers()
    # a HED-like file: the trunk and side outputs, no fc6_cs
    hed = [layer for layer in layers if layer[0].startswith("conv")] + [("score-dsn1", "Convolution", [np.zeros((1, 4, 1, 1), np.float32), np.zeros(1, np.float32)])]
    write_caffemodel(tmp_path / "hed.caffemodel", hed)
    res = cli("fcn", "convert", tmp_path / "hed.caffemodel", "--out", tmp_path / "hed.safetensors")
    _one_line_error(res, "hed.caffemodel", "missing layer 'fc6_cs'")
    # one wrong shape
    bad = [(n, t, [np.zeros((20, 20, 8, 8), np.float32)] if n == "upscore8" else b) for n, t, b in layers]
    write_caffemodel(tmp_path / "bad.caffemodel", bad)
    res = cli("fcn", "convert", tmp_path / "bad.caffemodel", "--out", tmp_path / "bad.safetensors")
    _one_line_error(res, "bad.caffemodel", "'upscore8'", "(20, 20, 8, 8)", "(20, 20, 16, 16)")
    # not a caffemodel at all, and a missing file
    (tmp_path / "junk.caffemodel").write_bytes(b"layer { name: 'conv1_1' }\n")
    _one_line_error(cli("fcn", "convert", tmp_path / "junk.caffemodel", "--out", tmp_path / "junk.safetensors"), "junk.caffemodel", "not a readable caffemodel")
    _one_line_error(cli("fcn", "convert", tmp_path / "none.caffemodel", "--out", tmp_path / "n.safetensors"), "none.caffemodel", "no such file")
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob(".tmp-*"))


@pytest.fixture
def tiny_dataset(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for split, n in (("train", 3), ("val", 1)):
        for i in range(n):
            ids = np.zeros((16, 16), np.uint8)
            ids[: rng.integers(4, 12)] = 10  # sky over road
            photo = np.where(ids[..., None] == 10, np.uint8(200), np.uint8(60)).repeat(3, 2)
            rel, lab = f"{split}/f{i}.png", f"labels/{split}/f{i}.png"
            digest = write_pair(tmp_path / "data" / rel, photo, CITYSCAPES.render(ids))
            extras = {"labels": {"file": lab, "sha256": write_image(tmp_path / "data" / lab, ids)}}
            pairs.append(PairRecord(split, f"f{i}", rel, ["x"], digest, extras))
    Manifest({"name": "tiny", "version": "1"}, {}, ["x"], [16, 16], "png", pairs).write(tmp_path / "data")
    return tmp_path / "data"


def test_train_command(cli, tmp_path, tiny_dataset):
    out = tmp_path / "scorer"
    res = cli("fcn", "train", "--data", tiny_dataset, "--out", out, "--width", "0.03125", "--epochs", "1", "--size", "16", "--lr", "1e-3", "--no-progress")
    assert res.code == 0, res.stderr
    assert "trained 1 epoch(s)" in res.stdout and "val pixel_acc" in res.stdout
    assert {p.name for p in out.iterdir()} == {"fcn8s.safetensors", "config.json", "log.jsonl", "resume.safetensors", "resume.json", ".p2ptools.json"}
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["width"] == 0.03125 and config["classes"]["name"] == "cityscapes" and config["photo"] == "A"
    assert load_scorer(out).classes == CITYSCAPES
    # a second run into the same folder needs --overwrite; bad option values are one line
    _one_line_error(cli("fcn", "train", "--data", tiny_dataset, "--out", out, "--width", "0.03125", "--epochs", "1", "--size", "16"), "--overwrite")
    _one_line_error(cli("fcn", "train", "--data", tiny_dataset, "--out", tmp_path / "o2", "--photo", "C"), "--photo")
    _one_line_error(cli("fcn", "train", "--data", tmp_path / "nowhere", "--out", tmp_path / "o3"), "nowhere")
