"""The night2day builder on generated Transient Attributes tars in the real layout."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from p2p_testutils import kill_mid_build_then_resume
from p2ptools_datasets.night2day import Night2DayBuilder, Night2DayOptions, pair_webcam

from p2ptools.buildkit import BuildOptions
from p2ptools.imageio import decode_image, encode_image
from p2ptools.pairs import load_manifest, read_pair

ATTRIBUTES = (
    "dirty daylight night sunrisesunset dawndusk sunny clouds fog storm snow warm cold busy beautiful flowers "
    "spring summer autumn winter glowing colorful dull rugged midday dark bright dry moist windy rain ice "
    "cluttered soothing stressful exciting sentimental mysterious boring gloomy lush"
).split()
# webcam -> (night images, day images, neither); 00000004 has no night image, so no pairs
CAMS = {"00000001": (2, 3, 1), "00000002": (1, 6, 0), "00000003": (3, 1, 1), "00000004": (0, 3, 1), "00000005": (2, 2, 0), "00000006": (1, 4, 0)}
SIZE = 16


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))


def _values(kind: str) -> tuple[float, float]:
    """(daylight, night) per kind; 'dusk' is bright enough but too 'night' for a day image."""
    return {"night": (0.1, 0.9), "day": (0.95, 0.05), "neither": (0.5, 0.5), "dusk": (0.85, 0.3)}[kind]


def make_source(root: Path) -> dict[str, str]:
    """Extracted layout under ``root``: imageAlignedLD/<cam>/<img>.jpg and annotations/{annotations.tsv,
    attributes.txt}. Returns {"<cam>/<img>.jpg": kind}."""
    rng = np.random.default_rng(0)
    kinds: dict[str, str] = {}
    for cam, (n_night, n_day, n_other) in CAMS.items():
        items = ["night"] * n_night + ["day"] * n_day + ["neither"] * n_other + (["dusk"] if cam == "00000001" else [])
        for i, kind in enumerate(items):
            kinds[f"{cam}/2013{i:04d}_{kind[:2]}.jpg"] = kind
    for key, kind in kinds.items():
        level = {"night": 25, "day": 200, "neither": 120, "dusk": 150}[kind]
        img = np.clip(rng.normal(level, 12, (30, 44, 3)), 0, 255).astype(np.uint8)
        path = root / "imageAlignedLD" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_image(img, "jpg", quality=90))
    lines = []
    for key, kind in kinds.items():
        fields = [f"{v:.3f},{c:.3f}" for v, c in rng.random((len(ATTRIBUTES), 2))]
        daylight, night = _values(kind)
        fields[ATTRIBUTES.index("daylight")] = f"{daylight},0.9"
        fields[ATTRIBUTES.index("night")] = f"{night},0.8"
        lines.append("\t".join([key, *fields]))
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "annotations.tsv").write_text("\n".join(lines) + "\n")
    (root / "annotations" / "attributes.txt").write_text("\n".join(ATTRIBUTES) + "\n")
    return kinds


def make_tars(root: Path, dest: Path) -> tuple[Path, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    for name, folder in (("aligned_images.tar", "imageAlignedLD"), ("annotations.tar", "annotations")):
        with tarfile.open(dest / name, "w") as tar:
            tar.add(root / folder, arcname=folder)
    return dest / "aligned_images.tar", dest / "annotations.tar"


def build(sources, out, **opts):
    options = Night2DayOptions(**{"days_per_night": 2, "val_fraction": 0.2, "test_fraction": 0.2, **opts})
    return Night2DayBuilder(options).build(sources, out, BuildOptions(size=SIZE, workers=1, format="png"), progress=False)


def test_pairs_follow_the_rule_and_splits_are_webcam_disjoint(tmp_path):
    kinds = make_source(tmp_path / "src")
    tars = make_tars(tmp_path / "src", tmp_path / "tars")
    manifest = build(tars, tmp_path / "out")
    per_night: dict[str, list[str]] = {}
    split_of_cam: dict[str, set[str]] = {}
    for rec in manifest.pairs:
        night, day = rec.sources
        assert night.startswith("imageAlignedLD/") and day.startswith("imageAlignedLD/")
        night_key, day_key = night[len("imageAlignedLD/") :], day[len("imageAlignedLD/") :]
        assert kinds[night_key] == "night" and kinds[day_key] == "day"
        cam = night_key.split("/")[0]
        assert day_key.split("/")[0] == cam
        assert rec.name == f"{cam}_{Path(night_key).stem}_{Path(day_key).stem}"
        per_night.setdefault(night_key, []).append(day_key)
        split_of_cam.setdefault(cam, set()).add(rec.split)
        # A is exactly the night image resized, B the day image (png output: no re-encoding loss)
        a, b = read_pair(tmp_path / "out" / rec.file)
        for half, key in ((a, night_key), (b, day_key)):
            src = decode_image((tmp_path / "src" / "imageAlignedLD" / key).read_bytes(), key)
            np.testing.assert_array_equal(half, cv2.resize(src, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
        assert a.mean() < 60 < 150 < b.mean()
    # every night image of a webcam with day images gets min(K, #days) distinct day images
    for key, kind in kinds.items():
        cam = key.split("/")[0]
        n_days = CAMS[cam][1]
        if kind == "night":
            assert len(per_night[key]) == len(set(per_night[key])) == min(2, n_days)
        else:
            assert key not in per_night
    assert "00000004" not in split_of_cam  # no night image: no pairs
    assert all(len(s) == 1 for s in split_of_cam.values()), split_of_cam
    assert sorted(s for (s,) in split_of_cam.values()) == ["test", "train", "train", "train", "val"]
    webcams = manifest.extras["webcams"]
    assert sorted(sum(webcams.values(), [])) == sorted(split_of_cam)
    assert manifest.extras["night_images"] == 9 and manifest.extras["day_images"] == 19


def test_extracted_folders_give_the_same_dataset(tmp_path):
    make_source(tmp_path / "src")
    tars = make_tars(tmp_path / "src", tmp_path / "tars")
    from_tars = build(tars, tmp_path / "a")
    from_dirs = build([tmp_path / "src" / "imageAlignedLD", tmp_path / "src" / "annotations"], tmp_path / "b")
    from_tar_folder = build([tmp_path / "tars"], tmp_path / "c")  # a folder holding the two tars
    key = lambda m: [(p.split, p.name, p.sources, p.sha256) for p in m.pairs]  # noqa: E731
    assert key(from_tars) == key(from_tar_folder) == key(from_dirs)
    assert key(from_tars) == key(build([tmp_path / "src"], tmp_path / "d"))  # the parent of both folders


def test_cap_and_seed(tmp_path):
    make_source(tmp_path / "src")
    capped = build([tmp_path / "src"], tmp_path / "a", days_per_night=10, max_pairs_per_webcam=3)
    per_cam: dict[str, int] = {}
    for rec in capped.pairs:
        per_cam[rec.name[:8]] = per_cam.get(rec.name[:8], 0) + 1
    assert per_cam == dict.fromkeys(["00000001", "00000002", "00000003", "00000005", "00000006"], 3)  # uncapped: 6, 6, 3, 4, 4
    # the seed chooses the day images
    rng = lambda s: np.random.default_rng(s)  # noqa: E731
    picks = {tuple(pair_webcam(["n"], [f"d{i}" for i in range(20)], rng(s), 3, 100)) for s in range(5)}
    assert len(picks) > 1 and all(len(p) == 3 for p in picks)


def test_errors_name_the_file(tmp_path, cli):
    make_source(tmp_path / "src")
    src = tmp_path / "src"
    res = cli("make-dataset", "night2day", "--source", tmp_path / "nope.tar", "--out", tmp_path / "o1", "--no-progress")
    assert res.code == 1 and "nope.tar" in res.stderr and len(res.stderr.strip().splitlines()) == 1

    res = cli("make-dataset", "night2day", "--source", src / "imageAlignedLD", "--out", tmp_path / "o2", "--no-progress")
    assert res.code == 1 and "no annotations.tsv found" in res.stderr

    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    lines = (bad / "annotations" / "annotations.tsv").read_text().splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0]  # 39 attributes instead of 40
    (bad / "annotations" / "annotations.tsv").write_text("\n".join(lines) + "\n")
    res = cli("make-dataset", "night2day", "--source", bad, "--out", tmp_path / "o3", "--no-progress")
    assert res.code == 1 and "annotations.tsv:3: expected 1 + 40 tab-separated fields, got 40" in res.stderr

    lines = (src / "annotations" / "annotations.tsv").read_text().splitlines()
    lines[2] = lines[2].replace("\t0.", "\tx.", 1)
    (bad / "annotations" / "annotations.tsv").write_text("\n".join(lines) + "\n")
    res = cli("make-dataset", "night2day", "--source", bad, "--out", tmp_path / "o4", "--no-progress")
    assert res.code == 1 and "annotations.tsv:3: field 2 is 'x." in res.stderr

    fields = lines[2].replace("\tx.", "\t0.", 1).split("\t")
    fields[3] = "1.5,0.5"  # field 4: the third attribute, night
    lines[2] = "\t".join(fields)
    (bad / "annotations" / "annotations.tsv").write_text("\n".join(lines[:3]) + "\n")
    res = cli("make-dataset", "night2day", "--source", bad, "--out", tmp_path / "o4", "--no-progress")
    assert res.code == 1 and "annotations.tsv:3: value 1.5 of field 4 is outside [0, 1]" in res.stderr

    (bad / "annotations" / "annotations.tsv").write_text((src / "annotations" / "annotations.tsv").read_text())
    (bad / "annotations" / "attributes.txt").write_text("\n".join(a for a in ATTRIBUTES if a != "night"))
    res = cli("make-dataset", "night2day", "--source", bad, "--out", tmp_path / "o5", "--no-progress")
    assert res.code == 1 and "attributes.txt: no 'night' attribute" in res.stderr

    (bad / "annotations" / "attributes.txt").write_text("\n".join(ATTRIBUTES))
    missing = next((bad / "imageAlignedLD" / "00000002").glob("*_ni.jpg"))
    missing.unlink()
    res = cli("make-dataset", "night2day", "--source", bad, "--out", tmp_path / "o6", "--no-progress", "--size", "16")
    assert res.code == 1 and f"annotated image 00000002/{missing.name} is not in imageAlignedLD" in res.stderr
    assert "annotations.tsv" in res.stderr and not (tmp_path / "o6" / "manifest.json").exists()
    res = cli("make-dataset", "night2day", "--source", bad, "--out", tmp_path / "o6", "--no-progress", "--size", "16", "--skip-bad")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "o6")
    assert manifest.extras["missing_images"] == [f"00000002/{missing.name}"]
    assert manifest.pairs and not any(s == f"imageAlignedLD/00000002/{missing.name}" for p in manifest.pairs for s in p.sources)


def test_truncated_image_is_named(tmp_path, cli):
    make_source(tmp_path / "src")
    victim = next((tmp_path / "src" / "imageAlignedLD" / "00000001").glob("*_ni.jpg"))
    victim.write_bytes(victim.read_bytes()[:200])
    tars = make_tars(tmp_path / "src", tmp_path / "tars")
    res = cli("make-dataset", "night2day", "--source", tars[0], "--source", tars[1], "--out", tmp_path / "o", "--no-progress", "--workers", "1")
    assert res.code == 1 and f"aligned_images.tar:imageAlignedLD/00000001/{victim.name}: truncated JPEG" in res.stderr
    assert not list((tmp_path / "o").rglob(".tmp-*"))


def test_download_from_a_local_server(tmp_path, cli):
    import subprocess
    import sys

    make_source(tmp_path / "src")
    served = tmp_path / "served"
    make_tars(tmp_path / "src", served)
    # a server process, not a thread: the build forks workers, and forking a threaded process can deadlock
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(served)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        port = server.stdout.readline().split(" port ")[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        args = ["make-dataset", "night2day", "--download", "--download-base-url", url, "--download-dir", tmp_path / "dl", "--size", "16", "--no-progress"]
        res = cli(*args, "--out", tmp_path / "out", "--val-fraction", "0.2", "--test-fraction", "0.2", "--days-per-night", "2", "--format", "png")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["aligned_images.tar", "annotations.tar"]
    reference = build([tmp_path / "src"], tmp_path / "ref")
    assert [(p.split, p.name, p.sha256) for p in load_manifest(tmp_path / "out").pairs] == [(p.split, p.name, p.sha256) for p in reference.pairs]


def test_resume_after_sigkill(tmp_path):
    make_source(tmp_path / "src")
    images, annotations = make_tars(tmp_path / "src", tmp_path / "tars")
    args = ["--source", images, "--source", annotations, "--size", str(SIZE), "--format", "png", "--workers", "2",
            "--days-per-night", "2", "--no-progress"]
    kill_mid_build_then_resume("night2day", args, tmp_path / "killed", tmp_path / "clean")
