"""edges2shoes / edges2handbags on generated UT-Zappos50K trees and iGAN HDF5 files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from p2p_testutils import build_then_sigkill
from p2ptools_datasets.edges import Edges2HandbagsBuilder, Edges2ShoesBuilder, EdgesOptions, safe_names

from p2ptools.buildkit import BuildOptions
from p2ptools.caffe import write_caffemodel
from p2ptools.edges.hed import HED, detect_edges, save_hed
from p2ptools.edges.postprocess import canny_edges, postprocess_hed, sobel_edges
from p2ptools.errors import CheckpointError, ConfigError, InputFileError, P2PError
from p2ptools.imageio import read_image
from p2ptools.pairs import read_pair

# Real Zappos quirks: spaces, folder names ending in ".", dotted CID.PID stems, "Mid-Calf".
ZAPPOS = [
    "Boots/Ankle/A. Testoni/7965307.5291.jpg",
    "Boots/Mid-Calf/Dr. Martens./8023951.3.jpg",
    "Boots/Mid-Calf/Dr. Martens/8023951.4.jpg",
    "Sandals/Flat/Brand Y./100.1.jpg",
    "Shoes/Oxfords/Brand X/200.2.jpg",
    "Shoes/Oxfords/Brand X./200.2.jpg",  # collides with the one above once made safe
    "Slippers/Slipper Flats/L.B. Evans/300.3.jpg",
    "Shoes/Loafers/Cole Haan/400.4.jpg",
]
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def photo(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size, 3), 235, np.uint8)
    color = tuple(int(c) for c in rng.integers(0, 160, 3))
    c = size // 2
    cv2.rectangle(img, (c - size // 3, c - size // 4), (c + int(rng.integers(2, size // 3)), c + size // 3), color, -1)
    return img


def make_zappos(root: Path, rels=ZAPPOS, size: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for rel in rels:
        path = root / "ut-zap50k-images-square" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(photo(rng, size), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


def zip_tree(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive


def build(builder, sources, out, **kw):
    options = {"size": 32, "workers": 1, "format": "png", **kw}
    return builder.build([Path(s) for s in sources], out, BuildOptions(**options), progress=False)


def test_shoes_canny_from_folder_and_zip(tmp_path):
    src = make_zappos(tmp_path / "src")
    archive = zip_tree(src, tmp_path / "ut-zap50k-images-square.zip")
    opts = EdgesOptions(edges="canny", val_count=2)
    m = build(Edges2ShoesBuilder(opts), [archive], tmp_path / "z", workers=2)
    assert m.counts == {"train": 6, "val": 2}
    names = [p.name for p in m.pairs]
    assert len(set(names)) == 8 and all(SAFE.match(n) for n in names)
    assert {p.sources[0] for p in m.pairs} == {f"ut-zap50k-images-square/{r}" for r in ZAPPOS}
    by_source = {p.sources[0]: p for p in m.pairs}
    rec = by_source["ut-zap50k-images-square/Boots/Mid-Calf/Dr. Martens./8023951.3.jpg"]
    assert rec.name == "Boots-Mid-Calf-Dr_Martens-8023951.3"
    for rec in m.pairs:
        a, b = read_pair(tmp_path / "z" / rec.file)
        source = read_image(src / rec.sources[0])
        assert set(np.unique(a)) <= {0, 255} and (a[..., 0] == a[..., 2]).all()
        np.testing.assert_array_equal(a[..., 0], canny_edges(source, 32))
        np.testing.assert_array_equal(b, cv2.resize(source, (32, 32), interpolation=cv2.INTER_CUBIC))
        assert (a == 0).any()
    folder = build(Edges2ShoesBuilder(opts), [src], tmp_path / "f")
    assert [(p.split, p.name, p.sha256) for p in folder.pairs] == [(p.split, p.name, p.sha256) for p in m.pairs]
    assert m.extras["edges"] == "canny"


def test_split_200_to_val_with_the_seed(tmp_path):
    rels = [f"Shoes/Sneakers/Brand {i // 50}/{1000 + i}.{i}.jpg" for i in range(450)]
    src = tmp_path / "src" / "ut-zap50k-images-square"
    for rel in rels:  # listing only: plan() decodes nothing for canny
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"")

    def splits(seed, root=tmp_path / "src"):
        jobs = list(Edges2ShoesBuilder(EdgesOptions(edges="sobel")).plan([root], BuildOptions(seed=seed)))
        return {j.name for j in jobs if j.split == "val"}, len(jobs)

    val0, n = splits(0)
    assert len(val0) == 200 and n == 450
    assert splits(0)[0] == val0 and splits(1)[0] != val0
    for rel in rels[300:]:
        (src / rel).unlink()
    assert len(splits(0)[0]) == 150  # at most half of a small source


def test_safe_names_are_unique():
    names = safe_names(["a b/x.1.jpg", "a_b/x.1.jpg", "A B./x.1.jpg", "c/.hidden name..jpg"])
    assert len(set(n.lower() for n in names.values())) == 4 and all(SAFE.match(n) for n in names.values())


@pytest.fixture
def tiny_hed(tmp_path):
    net = HED(width=1 / 16)
    gen = np.random.default_rng(5)
    with __import__("torch").no_grad():
        for p in net.parameters():
            p.copy_(__import__("torch").from_numpy(gen.normal(0, 0.3, tuple(p.shape)).astype(np.float32)))
    path = tmp_path / "hed.safetensors"
    save_hed(net, path)
    return net, path


def test_shoes_hed_pipeline_cache_and_bad_image(tmp_path, tiny_hed, cache, monkeypatch):
    net, weights = tiny_hed
    rels = ZAPPOS[:4]
    src = make_zappos(tmp_path / "src", rels, size=20)
    bad = src / "ut-zap50k-images-square/Boots/Ankle/Bad Brand./999.9.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((src / "ut-zap50k-images-square" / rels[0]).read_bytes()[:-40])  # truncated JPEG
    opts = EdgesOptions(hed_weights=weights, device="cpu", val_count=1, hed_batch_size=2)
    with pytest.raises(P2PError, match=r"999\.9\.jpg: truncated"):
        build(Edges2ShoesBuilder(opts), [src], tmp_path / "o", size=40)
    m = build(Edges2ShoesBuilder(opts), [src], tmp_path / "o", skip_bad=True, size=40)  # resumes with --skip-bad
    assert m.counts == {"train": 3, "val": 1} and [s.sources for s in m.skipped] == [[bad.relative_to(src).as_posix()]]
    assert len(list((cache / "hed").rglob("*.png"))) == 4
    assert m.extras["hed"]["weights"] == "hed.safetensors"
    for rec in m.pairs:
        a, b = read_pair(tmp_path / "o" / rec.file)
        source = read_image(src / rec.sources[0])
        prob = np.rint(detect_edges([source], net)[0] * 65535) / 65535  # as cached: 16-bit
        expected = postprocess_hed(prob.astype(np.float32), 40)
        assert set(np.unique(a)) <= {0, 255}
        np.testing.assert_array_equal(a[..., 1], expected)
        assert (a == 0).any() and (a == 255).any()

    # Another size re-uses the cached maps: the network is not even loaded.
    def no_network(path):
        raise AssertionError("HED was run again")

    monkeypatch.setattr("p2ptools.edges.hed.load_hed", no_network)
    m2 = build(Edges2ShoesBuilder(opts), [src], tmp_path / "o2", skip_bad=True, size=24, workers=2)
    assert m2.counts == {"train": 3, "val": 1}


def test_missing_weights_fail_with_both_ways_out(tmp_path, cli):
    src = make_zappos(tmp_path / "src", ZAPPOS[:2])
    with pytest.raises(ConfigError, match=r"--hed-weights PATH.*--edges canny or --edges sobel"):
        build(Edges2ShoesBuilder(), [src], tmp_path / "o")
    res = cli("make-dataset", "edges2handbags", "--source", src, "--out", tmp_path / "o2")
    assert res.code == 1 and res.stderr.count("error:") == 1
    assert "--hed-weights" in res.stderr and "--edges canny" in res.stderr and "--edges sobel" in res.stderr
    assert not (tmp_path / "o2").exists()
    res = cli("make-dataset", "edges2shoes", "--source", src, "--out", tmp_path / "o3", "--hed-weights", tmp_path / "nope.caffemodel")
    assert res.code == 1 and "nope.caffemodel" in res.stderr
    not_hed = tmp_path / "vgg.caffemodel"
    write_caffemodel(not_hed, [("conv1_1", "Convolution", [np.zeros((64, 3, 3, 3), np.float32), np.zeros(64, np.float32)])])
    with pytest.raises(CheckpointError, match=r"vgg\.caffemodel.*missing layer.*score-dsn1"):
        build(Edges2ShoesBuilder(EdgesOptions(hed_weights=not_hed, device="cpu")), [src], tmp_path / "o4")


def make_h5(path: Path, n: int = 6, size: int = 16, seed: int = 1, name: str = "imgs") -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = np.stack([photo(rng, size) for _ in range(n)])
    with h5py.File(path, "w") as fh:
        fh.create_dataset(name, data=imgs)
    return imgs


def test_handbags_from_hdf5_in_a_zip_the_bare_file_and_photos(tmp_path, cache):
    imgs = make_h5(tmp_path / "handbag_64.hdf5")
    archive = tmp_path / "handbag_64.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "handbag_64.hdf5", "handbag_64.hdf5")
    opts = EdgesOptions(edges="sobel", val_count=2)
    m = build(Edges2HandbagsBuilder(opts), [archive], tmp_path / "z")
    assert m.counts == {"train": 4, "val": 2}
    assert sorted(p.name for p in m.pairs) == [f"handbag_64_{i:06d}" for i in range(6)]
    for rec in m.pairs:
        i = int(rec.name[-6:])
        assert rec.sources == [f"{archive}:handbag_64.hdf5:imgs[{i}]"]
        a, b = read_pair(tmp_path / "z" / rec.file)
        np.testing.assert_array_equal(b, cv2.resize(imgs[i], (32, 32), interpolation=cv2.INTER_CUBIC))
        np.testing.assert_array_equal(a[..., 0], sobel_edges(imgs[i], 32))
        assert set(np.unique(a)) <= {0, 255} and (a == 0).any()
    extracted = list((cache / "hdf5").rglob("*.hdf5"))
    assert len(extracted) == 1 and not list((cache / "hdf5").rglob(".tmp-*"))
    stamp = extracted[0].stat().st_mtime_ns
    bare = build(Edges2HandbagsBuilder(opts), [tmp_path / "handbag_64.hdf5"], tmp_path / "b")
    again = build(Edges2HandbagsBuilder(opts), [archive], tmp_path / "z2", workers=2)
    assert [p.sha256 for p in bare.pairs] == [p.sha256 for p in m.pairs] == [p.sha256 for p in again.pairs]
    assert extracted[0].stat().st_mtime_ns == stamp  # extracted once

    photos = make_zappos(tmp_path / "photos", ["a/one.jpg", "b/two two.jpg"])
    m = build(Edges2HandbagsBuilder(EdgesOptions(edges="canny", val_count=1)), [photos], tmp_path / "p")
    assert sorted(p.name for p in m.pairs) == ["ut-zap50k-images-square-a-one", "ut-zap50k-images-square-b-two_two"]

    make_h5(tmp_path / "wrong.h5", name="images")
    with pytest.raises(InputFileError, match=r"wrong\.h5.*no dataset 'imgs'.*images"):
        build(Edges2HandbagsBuilder(opts), [tmp_path / "wrong.h5"], tmp_path / "w")
    with h5py.File(tmp_path / "gray.h5", "w") as fh:
        fh.create_dataset("imgs", data=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputFileError, match=r"gray\.h5.*\(2, 8, 8\).*\(N, W, W, 3\)"):
        build(Edges2HandbagsBuilder(opts), [tmp_path / "gray.h5"], tmp_path / "w2")


def test_resume_after_sigkill_matches_an_uninterrupted_build(tmp_path):
    """SIGKILL a CLI build once some pairs exist; the rerun completes it byte for byte."""
    rels = [f"Shoes/Sneakers and Athletic Shoes/Brand {i % 7}./{5000 + i}.{i}.jpg" for i in range(160)]
    src = make_zappos(tmp_path / "src", rels, size=64)
    archive = zip_tree(src, tmp_path / "ut-zap50k-images-square.zip")
    env = {**os.environ, "P2PTOOLS_CACHE": str(tmp_path / "cache")}

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "p2ptools", "make-dataset", "edges2shoes", "--source", str(archive), "--out", str(out),
                "--edges", "sobel", "--size", "256", "--workers", "2", "--val-count", "10", "--no-progress"]  # fmt: skip

    out = tmp_path / "killed"
    journal = out / ".p2ptools-journal.jsonl"
    build_then_sigkill(command(out), out, pairs=5, env=env)  # the CLI and its worker processes
    done = len(list(out.glob("*/*.jpg")))
    assert 5 <= done < len(rels) and not (out / "manifest.json").exists()

    rerun = subprocess.run(command(out), capture_output=True, text=True, timeout=120, env=env)
    assert rerun.returncode == 0, rerun.stderr
    clean = tmp_path / "clean"
    assert subprocess.run(command(clean), capture_output=True, timeout=120, env=env).returncode == 0
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(files) == len(rels) + 2  # pairs, manifest, ownership record
    for rel in files:
        assert (out / rel).read_bytes() == (clean / rel).read_bytes(), rel
    assert not list(out.rglob(".tmp-*")) and not journal.exists()
