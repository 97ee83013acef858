"""``p2ptools eval --miou``: a third-party scorer registered by entry point, reports, tables,
--shard + merge, the real drn-d-105 scorer from a .pth in the published layout, one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from p2p_testutils import make_distribution

_spec = importlib.util.spec_from_file_location("_p2p_eval_helpers_miou", Path(__file__).resolve().parents[1] / "eval" / "conftest.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
FRAMES = [f"munster_000000_{i:06d}" for i in range(4)]

ORACLE = '''
import cv2
import numpy as np
from p2ptools.eval.scorers import SegmentationScorer
from p2ptools.labels import CITYSCAPES


class Oracle(SegmentationScorer):
    """Decodes the class colours of the images (a stand-in for DeepLab or UperNet)."""

    name = "oracle"
    version = "0.1"
    summary = "class colours decoded (test plugin)"

    def __init__(self, weights):
        self.classes, self.weights = CITYSCAPES, str(weights)

    @classmethod
    def from_weights(cls, weights, options):
        open(weights, "rb").close()
        return cls(weights)

    def preprocess(self, images):
        return images

    def logits(self, x):
        raise NotImplementedError

    def predict(self, images, label_size):
        out = [self.classes.decode_colors(cv2.resize(i, (label_size[1], label_size[0]), interpolation=cv2.INTER_NEAREST)) for i in images]
        return np.stack([np.where(p == 255, 0, p) for p in out]).astype(np.uint8)

    def info(self):
        return {"scorer": self.name, "weights": self.weights, "scales": [1.0]}
'''


@pytest.fixture
def oracle(tmp_path, monkeypatch):
    site = make_distribution(tmp_path / "site", "p2ptools-oracle", "p2p_oracle", {"p2ptools.scorers": {"oracle": "p2p_oracle:Oracle"}}, ORACLE)
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "oracle.bin").write_bytes(b"w")
    return tmp_path / "oracle.bin"


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    gts = {n: _helpers.random_train_ids(rng, (16, 24)) for n in FRAMES}
    preds = {n: np.where(rng.random((16, 24)) < 0.7, g, rng.integers(0, 19, (16, 24))).astype(np.uint8) for n, g in gts.items()}
    preds = {n: np.where(p == 255, 0, p).astype(np.uint8) for n, p in preds.items()}
    _helpers.make_cityscapes(tmp_path / "cs", gts)
    _helpers.make_results(tmp_path / "res", preds)
    return tmp_path, gts, preds


def expected(gts, preds):
    """mIoU (mean over classes present) and pixel accuracy, computed directly."""
    ious = []
    for c in range(19):
        inter = sum(int(((g == c) & (p == c)).sum()) for g, p in zip(gts, preds, strict=True))
        union = sum(int((((g == c) | (p == c)) & (g != 255)).sum()) for g, p in zip(gts, preds, strict=True))
        if union:
            ious.append(inter / union)
    right = sum(int(((g == p) & (g != 255)).sum()) for g, p in zip(gts, preds, strict=True))
    return float(np.mean(ious)), right / sum(int((g != 255).sum()) for g in gts)


def test_scorers_lists_the_builtins_and_a_plugin(cli, oracle):
    r = cli("scorers")
    assert r.code == 0, r.stderr
    for name in ("fcn8s", "drn-d-105", "oracle", "p2ptools-oracle"):
        assert name in r.stdout


def test_report_with_a_registered_scorer(cli, scene, oracle):
    root, gts, preds = scene
    r = cli("eval", "--miou", "oracle", "--miou-weights", oracle, "--cityscapes", root / "cs", "--results", root / "res",
            "--label-resize", "bilinear-argmax", "--out", root / "rep", "--no-progress")
    assert r.code == 0, r.stderr
    block = json.loads((root / "rep" / "report.json").read_text())["miou"]
    miou, acc = expected([gts[n] for n in FRAMES], [preds[n] for n in FRAMES])
    assert block["miou"] == pytest.approx(miou) and block["accuracy"] == pytest.approx(acc)
    p = block["protocol"]
    assert (p["scorer"], p["size"], p["label_resize"], p["split"], p["label_maps"], p["images"]) == ("oracle", "native", "bilinear-argmax", "val", 4, 4)
    assert f"{miou:.3f}" in r.stdout and "mIoU (oracle)" in r.stdout
    for name in ("report.md", "report.html"):
        text = (root / "rep" / name).read_text()
        assert "labels resized bilinear-argmax; Cityscapes val (4 label maps), 4 images" in text and "Per-class IoU (oracle)" in text
    csv = (root / "rep" / "miou_per_class.csv").read_text().splitlines()
    assert csv[0] == "class,iou" and len(csv) == 20


def test_shards_merge_into_the_single_run(cli, scene, oracle):
    root, gts, _ = scene
    base = ("eval", "--miou", "oracle", "--miou-weights", oracle, "--cityscapes", root / "cs", "--results", root / "res", "--miou-size", "48x32", "--no-progress")
    assert cli(*base, "--out", root / "whole").code == 0
    for i in range(2):
        r = cli(*base, "--shard", f"{i}/2", "--out", root / f"part{i}")
        assert r.code == 0, r.stderr
    r = cli("eval", "merge", root / "part0", root / "part1", "--out", root / "merged")
    assert r.code == 0, r.stderr
    whole = json.loads((root / "whole" / "report.json").read_text())["miou"]
    merged = json.loads((root / "merged" / "report.json").read_text())["miou"]
    assert merged == whole
    assert whole["pixels"] == 4 * sum(int((g != 255).sum()) for g in gts.values())  # 2x upsampled labels: 4x the pixels
    assert whole["protocol"]["segmented_at"] == {"width": 48, "height": 32}


def test_table_has_the_column_group_and_the_protocol_in_its_caption(cli, scene, oracle, tmp_path):
    root, gts, preds = scene
    other = _helpers.make_results(tmp_path / "res2", {n: np.zeros_like(p) for n, p in preds.items()})
    r = cli("eval", "--miou", "oracle", "--miou-weights", oracle, "--cityscapes", root / "cs", "--results", root / "res", "--results", other,
            "--out", root / "table", "--no-progress")
    assert r.code == 0, r.stderr
    md = (root / "table" / "table.md").read_text()
    assert "mIoU (oracle)" in md and "Acc. (oracle)" in md and "mIoU protocol: oracle single-scale" in md
    assert "mIoU protocol: oracle single-scale" in (root / "table" / "table.tex").read_text()
    assert "mIoU protocol: oracle single-scale" in (root / "table" / "table.html").read_text()


def test_one_line_errors(cli, scene, oracle, tmp_path):
    root, _, _ = scene
    base = ("eval", "--cityscapes", root / "cs", "--results", root / "res", "--no-progress")
    cases = [
        (("--miou", "oracle"), "--miou-weights"),
        (("--miou", "deeplab", "--miou-weights", oracle), "unknown scorer 'deeplab'"),
        (("--miou", "oracle", "--miou-weights", oracle, "--miou-size", "huge"), "--miou-size"),
        (("--miou", "oracle", "--miou-weights", oracle, "--miou-split", "train"), "{train}"),
    ]
    _helpers.make_cityscapes(root / "cs2", {**{n: np.zeros((16, 24), np.uint8) for n in FRAMES}, "munster_000000_000009": np.zeros((16, 24), np.uint8)})
    cases.append((("--miou", "oracle", "--miou-weights", oracle, "--cityscapes", root / "cs2"), "4 result images for the 5 label maps of Cityscapes val"))
    for k, (args, needle) in enumerate(cases):
        r = cli(*base, *args, "--out", tmp_path / f"o{k}")
        assert r.code == 1 and r.stderr.count("\n") == 1 and needle in r.stderr, (args, r.stderr)
        assert not (tmp_path / f"o{k}").exists()


@pytest.fixture(scope="module")
def drn_weights(tmp_path_factory):
    from p2ptools.nets.drn import DRNSeg

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("drn") / "drn-d-105_ms_cityscapes.pth"
    torch.save(DRNSeg(19).state_dict(), path)
    return path


def test_drn_end_to_end(cli, scene, drn_weights, tmp_path):
    from p2ptools.eval.drn_scorer import DRNScorer
    from p2ptools.eval.scorers import ScorerOptions
    from p2ptools.imageio import read_image

    root, gts, _ = scene
    r = cli("eval", "--miou", "drn-d-105", "--drn-weights", drn_weights, "--cityscapes", root / "cs", "--results", root / "res", "--out", root / "rep", "--no-progress")
    assert r.code == 0, r.stderr
    block = json.loads((root / "rep" / "report.json").read_text())["miou"]
    images = [read_image(root / "res" / f"{n}_leftImg8bit.png") for n in FRAMES]
    preds = DRNScorer.from_weights(drn_weights, ScorerOptions()).predict(images, (16, 24))
    miou, acc = expected([gts[n] for n in FRAMES], list(preds))
    assert block["miou"] == pytest.approx(miou) and block["accuracy"] == pytest.approx(acc)
    assert block["protocol"]["scorer_info"]["mean_rgb"][0] == pytest.approx(0.290101, abs=1e-6) and block["protocol"]["weights"] == str(drn_weights)
    (tmp_path / "bad.pth").write_bytes(b"\x00" * 64)
    r = cli("eval", "--miou", "drn-d-105", "--drn-weights", tmp_path / "bad.pth", "--cityscapes", root / "cs", "--results", root / "res", "--out", tmp_path / "o")
    assert r.code == 1 and r.stderr.count("\n") == 1 and str(tmp_path / "bad.pth") in r.stderr and "weights_only" in r.stderr
