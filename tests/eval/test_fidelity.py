"""FID / KID / LPIPS in the evaluator: the pass against independent computations on the same
features, the ground-truth cache, --shard + merge equal to one run, torchrun-style strided shares,
and bad input. The Inception network is replaced by a cheap 16-d projection (its parity with
pytorch-fid is tests/metrics/test_inception.py); LPIPS is the real network on a random backbone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.evaluate import EvalOptions, evaluate_results
from p2ptools.eval.fidelity import FidelityModels, FidelityOptions
from p2ptools.eval.matching import find_results
from p2ptools.imageio import write_image
from p2ptools.metrics.fid import frechet_distance
from p2ptools.metrics.kid import kid
from p2ptools.metrics.resize import as_rgb

DIM = 16


class TinyExtractor:
    """A 16-d stand-in for the Inception features: a fixed projection of a 4x4 area-resized image."""

    dim = DIM

    def __init__(self) -> None:
        self.proj = np.random.default_rng(0).standard_normal((48, DIM))
        self.calls = 0

    def __call__(self, images):
        self.calls += len(images)
        rows = [cv2.resize(as_rgb(im), (4, 4), interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255 @ self.proj for im in images]
        return np.asarray(rows, np.float32)


def mean_difference(outputs, truths):
    """A cheap stand-in for LPIPS (same interface): |mean(output) - mean(truth)| / 255 per pair."""
    return np.array([abs(float(o.mean()) - float(t.mean())) / 255 for o, t in zip(outputs, truths, strict=True)]), 0


def tiny_models(options: FidelityOptions, lpips_file: Path | None = None) -> FidelityModels:
    """Models with the 16-d Inception stand-in; LPIPS real with ``lpips_file``, else :func:`mean_difference`."""
    models = FidelityModels(replace(options, fid=False, kid=False, lpips=options.lpips and lpips_file is not None, lpips_backbone_weights=lpips_file))
    models.options = options
    if options.lpips and lpips_file is None:
        backbone = {"path": "stand-in", "sha256": "0" * 64, "published_name": "alexnet-owt-7be5be79.pth", "matches_published": False}
        models.lpips, models.lpips_info = mean_difference, {"net": "stand-in", "version": "0.1", "backbone": backbone, "linear_layers": {"path": "stand-in", "sha256": "0" * 64}}
    if options.inception:
        models.extractor, models.feature_dim = TinyExtractor(), DIM
        models.inception_info = {"path": "tiny", "sha256": "0" * 64, "published_name": "pt_inception-2015-12-05-6726825d.pth", "matches_published": False}
    return models


def make_set(root: Path, n: int = 6, size=(32, 32), seed: int = 0) -> Path:
    """A results folder as p2ptools translate writes it: outputs, target/ and input/."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        truth = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (5, 5), 1.5)
        noise = rng.integers(-40, 40, (*size, 3))
        write_image(root / f"img{i}.png", np.clip(truth.astype(int) + noise, 0, 255).astype(np.uint8))
        write_image(root / "target" / f"img{i}.png", truth)
        write_image(root / "input" / f"img{i}.png", 255 - truth)
    return root


def run(results: Path, fopts: FidelityOptions, models: FidelityModels, feature_dir: Path, **kw):
    options = EvalOptions(progress=False, image_metrics=False, fidelity=fopts, batch_size=2)
    return evaluate_results(find_results(results), options, fidelity=models, feature_dir=feature_dir, **kw)


ALL = FidelityOptions(fid=True, kid=True, lpips=True, kid_subsets=5, kid_subset_size=4, gallery=3)


def test_numbers_equal_independent_computations(tmp_path, alexnet_file):
    res = make_set(tmp_path / "res")
    models = tiny_models(ALL, alexnet_file)
    ev = run(res, ALL, models, tmp_path / "rep" / "features")
    from p2ptools.imageio import read_image

    names = sorted(p.stem for p in res.glob("*.png"))
    outs = [read_image(res / f"{n}.png") for n in names]
    truths = [read_image(res / "target" / f"{n}.png") for n in names]
    fo, ft = TinyExtractor()(outs).astype(np.float64), TinyExtractor()(truths).astype(np.float64)
    expected = frechet_distance(fo.mean(0), np.cov(fo, rowvar=False), ft.mean(0), np.cov(ft, rowvar=False))
    assert ev.report["fid"]["value"] == pytest.approx(expected, rel=1e-6)  # streaming sums vs two-pass np.cov, singular covariances
    assert ev.report["fid"]["n_images"] == 6 and "warning" in ev.report["fid"] and "2048" in ev.report["fid"]["warning"]
    assert ev.report["fid"]["protocol"] == "clean" and ev.report["fid"]["sizes"] == {"results": {"32x32": 6}, "truth": {"32x32": 6}}
    k = kid(fo.astype(np.float32), ft.astype(np.float32), subsets=5, subset_size=4, seed=2020)
    assert ev.report["kid"]["mean"] == pytest.approx(k["mean"], rel=1e-9) and ev.report["kid"]["std"] == pytest.approx(k["std"], rel=1e-9)
    on_disk = np.load(tmp_path / "rep" / "features" / "results.rank0-of-1.npy")
    assert on_disk.shape == (6, DIM) and np.allclose(on_disk, fo)  # KID features live in the report folder
    values, _ = models.lpips(outs, truths)
    assert ev.report["lpips"]["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert ev.per_image == pytest.approx(dict(zip(names, values.tolist(), strict=True)))
    worst = [names[i] for i in np.argsort(-values)[:3]]
    assert [g["name"] for g in ev.gallery] == worst
    assert all(g["input"] is not None and g["output"].shape == (32, 32, 3) for g in ev.gallery)


def test_ground_truth_statistics_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    fopts = FidelityOptions(fid=True, kid=True, kid_subsets=2, kid_subset_size=3)
    res = make_set(tmp_path / "res")
    models = tiny_models(fopts)
    first = run(res, fopts, models, tmp_path / "a")
    assert models.extractor.calls == 12  # results and ground truth
    second = run(res, fopts, models, tmp_path / "b")
    assert models.extractor.calls == 18  # only the results: the ground truth came from the cache
    assert second.report["fid"]["value"] == first.report["fid"]["value"] and second.report["kid"] == first.report["kid"]
    assert second.report["fid"]["ground_truth_cached_shares"] == 1
    write_image(res / "target" / "img0.png", np.zeros((32, 32, 3), np.uint8))  # new content, new key
    run(res, fopts, models, tmp_path / "c")
    assert models.extractor.calls == 30
    legacy = replace(fopts, protocol="legacy")
    models.options = legacy
    run(res, legacy, models, tmp_path / "d")  # another protocol, another key
    assert models.extractor.calls == 42


def test_shards_merge_to_the_unsharded_report(tmp_path):
    from p2ptools.eval.partial import (
        build_evaluation,
        merge_partials,
        read_partial,
        write_partial,
    )

    res = make_set(tmp_path / "res", n=7)
    fopts = replace(ALL, cache=False)
    models = tiny_models(fopts)
    whole = run(res, fopts, models, tmp_path / "whole")
    parts = []
    for i in range(3):
        folder = tmp_path / f"part{i}"
        ev = run(res, fopts, models, folder / "features", shard=(i, 3))
        write_partial(ev.partial, folder)
        parts.append(folder)
    assert read_partial(parts[1]).shard == (1, 3)
    partial, feature_dir = merge_partials(parts[::-1], tmp_path / "merged")
    merged = build_evaluation(partial, feature_dir)
    assert merged.report["n_images"] == 7 and merged.report["fid"]["n_images"] == 7
    whole_state = run(res, fopts, models, tmp_path / "whole2", shard=(0, 1)).partial.arrays
    for key in ("fid_out.sum", "fid_out.outer", "fid_gt.sum", "fid_gt.outer"):
        np.testing.assert_allclose(partial.arrays[key], whole_state[key], rtol=1e-9, atol=1e-12)
    assert partial.arrays["fid_out.count"].tolist() == whole_state["fid_out.count"].tolist() == [7]
    assert merged.report["fid"]["value"] == pytest.approx(whole.report["fid"]["value"], rel=1e-9)
    assert merged.report["kid"]["mean"] == pytest.approx(whole.report["kid"]["mean"], rel=1e-9)
    assert merged.report["kid"]["std"] == pytest.approx(whole.report["kid"]["std"], rel=1e-9)
    assert merged.report["lpips"]["mean"] == pytest.approx(whole.report["lpips"]["mean"], rel=1e-9)
    assert merged.report["lpips"]["n_images"] == 7
    assert [g["name"] for g in merged.gallery] == [g["name"] for g in whole.gallery]
    with pytest.raises(ConfigError, match="each of the shards 0..2 of 3 once"):
        merge_partials(parts[:2], tmp_path / "bad")


def test_bad_input(tmp_path, alexnet_file):
    res = make_set(tmp_path / "res", n=3)
    lp = FidelityOptions(lpips=True)
    models = tiny_models(lp, alexnet_file)
    options = EvalOptions(progress=False, fidelity=lp, real=tmp_path / "res" / "target")
    write_image(tmp_path / "res" / "target" / "extra.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputFileError, match="4 ground-truth photos for 3 results"):
        evaluate_results(find_results(res), options, fidelity=models, feature_dir=tmp_path / "f")
    (tmp_path / "res" / "target" / "extra.png").unlink()
    one = make_set(tmp_path / "one", n=1)
    fid = FidelityOptions(fid=True)
    with pytest.raises(InputFileError, match="one: FID and KID need at least 2 images, the results have 1"):
        run(one, fid, tiny_models(fid), tmp_path / "g")
    assert not (tmp_path / "g").exists()  # refused before anything is written
    res_gray = make_set(tmp_path / "gray", n=2)
    write_image(res_gray / "img1.png", np.full((20, 24), 128, np.uint8))  # gray, and another size: converted and resized
    ev = run(res_gray, replace(fid, kid=True, kid_subsets=1, kid_subset_size=2), tiny_models(replace(fid, kid=True)), tmp_path / "gf")
    assert ev.report["fid"]["sizes"]["results"] == {"24x20": 1, "32x32": 1}
    with pytest.raises(ConfigError, match="need ground-truth photos"):
        for sub in ("target", "input"):
            for p in (one / sub).iterdir():
                p.unlink()
            (one / sub).rmdir()
        run(one, fid, tiny_models(fid), tmp_path / "h")
    with pytest.raises(ConfigError, match="--fid-protocol"):
        FidelityOptions(fid=True, protocol="bilinear").check()


RANK_SCRIPT = """
import json, sys
from pathlib import Path
import importlib.util
spec = importlib.util.spec_from_file_location("helpers", sys.argv[2])
helpers = importlib.util.module_from_spec(spec); spec.loader.exec_module(helpers)
from p2ptools.eval.evaluate import distributed_context, distributed_session
root = Path(sys.argv[1])
with distributed_session("cpu"):
    rank, world = distributed_context()
    models = helpers.tiny_models(helpers.ALL)
    ev = helpers.run(root / "res", helpers.ALL, models, root / "rep" / "features")
print(json.dumps({"rank": rank, "report": {k: ev.report.get(k) for k in ("fid", "kid", "lpips", "n_images")}, "gallery": [g["name"] for g in ev.gallery], "per_image": ev.per_image}))
"""


def test_torchrun_ranks_take_strided_shares_and_sum(tmp_path, monkeypatch):
    """2 CPU processes (gloo): FID sums and LPIPS sums all-reduced, KID read from both ranks' files."""
    import os
    import socket
    import subprocess
    import sys

    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    res = make_set(tmp_path / "res", n=5)
    single = run(res, ALL, tiny_models(ALL), tmp_path / "single")
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(tmp_path / "rank.py"), str(tmp_path), __file__]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(p.name for p in (tmp_path / "rep" / "features").iterdir()) == [
        "results.rank0-of-2.npy", "results.rank1-of-2.npy", "truth.rank0-of-2.npy", "truth.rank1-of-2.npy",
    ]  # fmt: skip
    for out in outs:
        rep = out["report"]
        assert rep["n_images"] == 5 and rep["fid"]["n_images"] == 5 and rep["lpips"]["n_images"] == 5
        assert rep["fid"]["value"] == pytest.approx(single.report["fid"]["value"], rel=1e-6)
        assert rep["kid"]["mean"] == pytest.approx(single.report["kid"]["mean"], rel=1e-9)
        assert rep["lpips"]["mean"] == pytest.approx(single.report["lpips"]["mean"], rel=1e-6)
        assert out["per_image"] == pytest.approx(single.per_image, rel=1e-6)
    by_rank = sorted(outs, key=lambda o: o["rank"])
    assert by_rank[0]["gallery"] == [g["name"] for g in single.gallery] and by_rank[1]["gallery"] == []


def test_a_failed_pass_leaves_the_earlier_features_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    fopts = FidelityOptions(kid=True, kid_subsets=2, kid_subset_size=3)
    res = make_set(tmp_path / "res")
    run(res, fopts, tiny_models(fopts), tmp_path / "features")
    before = {p.name: p.read_bytes() for p in (tmp_path / "features").iterdir()}
    assert sorted(before) == ["results.rank0-of-1.npy", "truth.rank0-of-1.npy"]
    write_image(res / "img0.png", np.zeros((32, 32, 3), np.uint8))
    (res / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # fails in the second batch
    with pytest.raises(InputFileError, match="img3.png"):
        run(res, fopts, tiny_models(fopts), tmp_path / "features")
    assert {p.name: p.read_bytes() for p in (tmp_path / "features").iterdir()} == before
