"""The synthetic-scenes builder: determinism, classes, exact label colours, variety, resume after SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys

import cv2
import numpy as np
from p2p_testutils import build_then_sigkill
from p2ptools_datasets.synthetic import SyntheticScenesBuilder, SyntheticScenesOptions, render_scene

from p2ptools.buildkit import BuildOptions, job_rng
from p2ptools.imageio import read_image
from p2ptools.labels import CITYSCAPES
from p2ptools.outputs import OWNER_NAME
from p2ptools.pairs import load_manifest, read_pair

REQUIRED = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole", "traffic sign", "terrain")


def build(out, seed=0, count=12, size=48, fmt="png"):
    builder = SyntheticScenesBuilder(SyntheticScenesOptions(count=count, val_fraction=0.25, test_fraction=0.25))
    return builder.build([], out, BuildOptions(size=size, seed=seed, workers=1, format=fmt), progress=False)


def test_render_scene_deterministic_and_seed_dependent():
    p1, l1 = render_scene(np.random.default_rng(7), 64)
    p2, l2 = render_scene(np.random.default_rng(7), 64)
    p3, l3 = render_scene(np.random.default_rng(8), 64)
    assert p1.shape == (64, 64, 3) and l1.shape == (64, 64) and p1.dtype == l1.dtype == np.uint8
    assert p1.tobytes() == p2.tobytes() and l1.tobytes() == l2.tobytes()
    assert (l1 != l3).mean() > 0.05 and np.abs(p1.astype(int) - p3).mean() > 10
    assert int(l1.max()) < CITYSCAPES.num_classes


def test_classes_and_variety_across_scenes():
    scenes = [render_scene(np.random.default_rng(s), 64) for s in range(16)]
    seen = set()
    for _photo, ids in scenes:
        seen |= {CITYSCAPES.names[i] for i in np.unique(ids)}
    assert set(REQUIRED) <= seen, set(REQUIRED) - seen
    # every scene holds the street itself
    for _photo, ids in scenes:
        present = set(np.unique(ids).tolist())
        assert {0, 1, 2, 10} <= present  # road, sidewalk, building, sky
    # the horizon varies: the lowest sky row differs between scenes
    horizons = {int(np.nonzero((ids == 10).any(1))[0].max()) for _p, ids in scenes}
    assert len(horizons) >= 6
    # the photo is not a colouring of the labels: a class's colour varies within and across scenes
    road_means = [photo[ids == 0].mean(0) for photo, ids in scenes]
    assert np.ptp(np.array(road_means), axis=0).max() > 25
    assert all(photo[ids == 8].std(0).mean() > 8 for photo, ids in scenes if (ids == 8).sum() > 30)  # foliage texture
    flat = [photo.astype(np.float32) for photo, _ in scenes]
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(8) for j in range(i + 1, 8)) > 10


TEXTURED = ("road", "sidewalk", "building", "vegetation")  # terrain is too rare in 24 scenes to count on


def _interior(ids: np.ndarray, cls: int) -> np.ndarray:
    """The pixels of ``cls`` at least 2 pixels from any other class (texture, not boundaries)."""
    return cv2.erode((ids == cls).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def _fine_detail(photo: np.ndarray) -> np.ndarray:
    """The grey photo minus its Gaussian blur (sigma 1.5): what a blur erases."""
    grey = photo.astype(np.float32).mean(2)
    return grey - cv2.GaussianBlur(grey, (0, 0), 1.5)


def _nearest_centroid_accuracy(features: np.ndarray, classes: np.ndarray) -> float:
    """Accuracy of classifying each row by the nearest class mean (means from all rows: optimistic)."""
    centroids = np.stack([features[classes == k].mean(0) for k in np.unique(classes)])
    return float((np.linalg.norm(features[:, None] - centroids[None], axis=2).argmin(1) == classes).mean())


def _gradient_energy(photo: np.ndarray, mask: np.ndarray) -> list[float]:
    """Mean absolute differences along x, y and both diagonals inside ``mask``, relative to its brightness."""
    grey = photo.astype(np.float32).mean(2)
    grey /= max(float(grey[mask].mean()), 1.0)
    m = mask[:-1, :-1]
    steps = (grey[:-1, 1:] - grey[:-1, :-1], grey[1:, :-1] - grey[:-1, :-1], grey[1:, 1:] - grey[:-1, :-1], grey[1:, :-1] - grey[:-1, 1:])
    return [float(np.abs(d)[m].mean()) for d in steps]


def test_classes_differ_in_texture_not_colour():
    """The FCN-score's premise (see the module docstring): colour names no textured class, texture does,
    and the texture's phase is random, so the average over scenes, what an L1 generator learns, is flat."""
    scenes = [render_scene(np.random.default_rng(s), 64) for s in range(24)]
    colour, texture = [], []  # (features, class) per scene and class
    for k, name in enumerate(TEXTURED):
        cls = CITYSCAPES.names.index(name)
        for photo, ids in scenes:
            inner = _interior(ids, cls)
            if inner.sum() > 40:
                colour.append((photo[ids == cls].mean(0), k))
                texture.append((_gradient_energy(photo, inner), k))
    assert len(texture) >= 50
    by_colour = _nearest_centroid_accuracy(np.array([f for f, _ in colour]), np.array([k for _, k in colour]))
    by_texture = _nearest_centroid_accuracy(np.array([f for f, _ in texture]), np.array([k for _, k in texture]))
    assert by_colour < 0.6 and by_texture > 0.85, (by_colour, by_texture)
    # fine detail: strong inside textured classes, almost none in the sky
    sky = CITYSCAPES.names.index("sky")
    def detail(cls: int) -> float:
        values = []
        for photo, ids in scenes:
            inner = _interior(ids, cls)
            if inner.sum() > 40:
                values.append(np.abs(_fine_detail(photo))[inner].mean())
        return float(np.median(values))
    assert all(detail(CITYSCAPES.names.index(name)) > max(6.0, 3 * detail(sky)) for name in TEXTURED)
    # random phase: the road's fine detail averaged over scenes (where it is road in all of them) is flat
    road = CITYSCAPES.names.index("road")
    mask = np.logical_and.reduce([_interior(ids, road) for _p, ids in scenes[:12]])
    assert mask.sum() > 100
    highs = [_fine_detail(p) for p, _ in scenes[:12]]
    one = np.mean([np.abs(h[mask]).mean() for h in highs])
    assert np.abs(np.mean(highs, 0)[mask]).mean() < 0.45 * one


def test_builder_output_exact_labels_and_splits(tmp_path):
    manifest = build(tmp_path / "out", seed=3)
    assert manifest.counts == {"train": 6, "val": 3, "test": 3}
    assert sorted(p.name for p in manifest.pairs) == [f"scene_{i:05d}" for i in range(12)]
    assert manifest.extras["direction"] == "AtoB" and manifest.extras["class_table"] == CITYSCAPES.to_dict()
    palette = {tuple(c) for c in CITYSCAPES.colors}
    for rec in manifest.pairs:
        a, b = read_pair(tmp_path / "out" / rec.file)
        ids = read_image(tmp_path / "out" / rec.extras["labels"]["file"], mode="gray")
        assert rec.extras["labels"]["file"] == f"labels/{rec.split}/{rec.name}.png"
        np.testing.assert_array_equal(a, CITYSCAPES.render(ids))
        assert {tuple(c) for c in np.unique(a.reshape(-1, 3), axis=0)} <= palette
        photo, expected_ids = render_scene(job_rng(3, "synthetic-scenes", rec.name), 48)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(b, photo)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    m1, m2, m3 = build(tmp_path / "a"), build(tmp_path / "b"), build(tmp_path / "c", seed=1)
    files = lambda m: [(p.split, p.name, p.sha256, p.extras["labels"]["sha256"]) for p in m.pairs]  # noqa: E731
    assert files(m1) == files(m2)
    assert {p.sha256 for p in m1.pairs}.isdisjoint({p.sha256 for p in m3.pairs})
    for rec in m1.pairs:
        assert (tmp_path / "a" / rec.file).read_bytes() == (tmp_path / "b" / rec.file).read_bytes()


def test_cli_defaults_to_png_and_checks_options(tmp_path, cli):
    res = cli("make-dataset", "synthetic-scenes", "--count", "4", "--size", "32", "--out", tmp_path / "out", "--workers", "2", "--no-progress")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "out")
    assert manifest.file_format == "png" and all(p.file.endswith(".png") for p in manifest.pairs)
    res = cli("make-dataset", "synthetic-scenes", "--count", "0", "--out", tmp_path / "o2", "--no-progress")
    assert res.code == 1 and res.stderr == "error: --count: invalid value 0; accepted range >= 1\n"
    res = cli("make-dataset", "synthetic-scenes", "--count", "10", "--val-fraction", "0.6", "--test-fraction", "0.5", "--out", tmp_path / "o3", "--no-progress")
    assert res.code == 1 and "must leave scenes for train" in res.stderr


def _p2ptools(*args: str) -> list[str]:
    return [sys.executable, "-m", "p2ptools", *args]


def test_resume_after_sigkill_is_byte_identical(tmp_path):
    args = ["make-dataset", "synthetic-scenes", "--count", "150", "--size", "96", "--workers", "1", "--no-progress"]
    out = tmp_path / "killed"
    assert build_then_sigkill(_p2ptools(*args, "--out", str(out)), out, pairs=8) == -signal.SIGKILL
    made = len(list(out.glob("*/scene_*.png")))
    assert 8 <= made < 150 and not (out / "manifest.json").exists()
    assert (out / ".p2ptools-journal.jsonl").exists()

    subprocess.run(_p2ptools(*args, "--out", str(out)), check=True, capture_output=True, timeout=120)
    subprocess.run(_p2ptools(*args, "--out", str(tmp_path / "clean")), check=True, capture_output=True, timeout=120)
    resumed, clean = load_manifest(out), load_manifest(tmp_path / "clean")
    assert len(resumed.pairs) == 150
    assert [(p.file, p.sha256, p.extras) for p in resumed.pairs] == [(p.file, p.sha256, p.extras) for p in clean.pairs]
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean").rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (tmp_path / "clean" / rel).read_bytes(), rel
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != OWNER_NAME]  # no .tmp- files, no journal


def test_dataset_of_an_older_builder_version_is_named_and_refused(tmp_path, cli):
    import json

    out = tmp_path / "out"
    args = ("make-dataset", "synthetic-scenes", "--count", "4", "--size", "32", "--out", out, "--workers", "1", "--no-progress")
    assert cli(*args).code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["builder"]["version"] = "1"
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = sorted((p.name, p.read_bytes()) for p in out.rglob("*.png"))
    res = cli(*args)
    assert res.code == 1, res.stdout
    assert f"{out}: holds a dataset built by synthetic-scenes version 1, not synthetic-scenes version 2; use --overwrite" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted((p.name, p.read_bytes()) for p in out.rglob("*.png")) == before  # nothing touched
    assert cli(*args, "--overwrite").code == 0 and load_manifest(out).builder["version"] == "2"
