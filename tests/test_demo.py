"""The embedded demo at a reduced size: its numbers must mean something, its pages must render."""

from __future__ import annotations

import csv
import html.parser
from pathlib import Path

import pytest

from p2ptools.demo import DemoConfig, build_scenes, evaluate, train_runs, train_scorer
from p2ptools.imageio import read_image
from p2ptools.plugin import TrainRequest


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> tuple[Path, Path]:
    """A 32 px demo: ``(table, reference)``, the demo's own ``table.html`` and one with an untrained
    generator (lr 0 keeps the initial weights) as an extra reference row.

    Its numbers depend on the thread count, so it runs on 2 threads whatever the machine (the demo's
    own 2 cores). Measured 2026-12-03 with these settings, per-pixel accuracy and class IoU of L1,
    L1+cGAN and ground truth: .386/.660/.760 and .046/.081/.104; seeds 1 and 2 keep the orderings too
    (.298/.676/.731, .022/.073/.096; .427/.633/.782, .057/.085/.113).
    """
    import torch
    from p2ptools_pix2pix.options import Pix2PixOptions
    from p2ptools_pix2pix.plugin import Pix2PixPlugin

    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(out=out, count=240, size=32, epochs=8, epochs_decay=5, ngf=16, ndf=16, fcn_epochs=14, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = build_scenes(config)
        scorer = train_scorer(config, data)
        runs = train_runs(config, data)
        untrained = Pix2PixOptions(netG="unet_32", ngf=16, ndf=16, loss="l1", lr=0.0, epochs=1, epochs_decay=0, batch_size=4,
                                   load_size=36, crop_size=32, workers=0, device="cpu")  # fmt: skip
        Pix2PixPlugin().train(untrained, TrainRequest(data, out / "runs" / "untrained", progress=False))
        table = evaluate(config, runs, scorer)
        with_untrained = DemoConfig(**{**config.__dict__, "out": out / "reference", "extra_rows": (str(out / "runs" / "untrained"),)})
        reference = evaluate(with_untrained, runs, scorer)
    finally:
        torch.set_num_threads(threads)
    return table, reference


def _rows(table: Path) -> dict[str, dict[str, float]]:
    with open(table.with_suffix(".csv"), newline="") as fh:
        reader = csv.DictReader(fh)
        key = reader.fieldnames[0]
        return {row[key]: {k: float(v) for k, v in row.items() if k != key and v not in ("", "nan")} for row in reader}


def test_ground_truth_row_high_and_trained_rows_beat_an_untrained_generator(small_demo):
    _, table = small_demo
    rows = _rows(table)
    truth = rows.pop("Ground truth")
    untrained = next(v for k, v in rows.items() if k.endswith("lr=0.0"))  # labelled by what differs
    trained = [v for k, v in rows.items() if not k.endswith("lr=0.0")]
    assert len(trained) == 2, rows
    acc = next(k for k in truth if "pixel" in k.lower())
    l1 = next(k for k in untrained if k.startswith("L1"))
    # the scorer learned the scenes: real photos score high, far above an untrained generator's noise
    assert truth[acc] >= 0.65 and truth[acc] >= untrained[acc] + 0.15, f"the FCN did not learn the scenes: {truth} vs {untrained}"
    for row in trained:  # by 0.06 on this project's AMD EPYC machines (2026-12-06), 0.1+ on the earlier ones
        assert row[acc] >= untrained[acc] + 0.05, (row, untrained)
        assert row[l1] <= 0.9 * untrained[l1], (row, untrained)


def test_reduced_demo_shows_the_papers_orderings(small_demo):
    """The demo's claim, on its own output: FCN per-pixel accuracy and class IoU rank ground truth >
    L1+cGAN > L1, each by at least 0.01 at this reduced size, and L1+cGAN's Lab histograms intersect the photos' more than L1's."""
    from p2ptools.demo import ordering_problems

    table, _ = small_demo
    # At 32 px the class-IoU gaps depend on the CPU's float kernels: seed 0 gives ground truth .105 vs
    # L1+cGAN .092 on this project's AMD EPYC machines (2026-12-06; .104 vs .081 on the earlier ones), so
    # this proxy asks for 0.01; the demo's own 0.02 is checked at 64 px by benchmarks/demo_seeds.py.
    assert ordering_problems(table.with_suffix(".csv"), gap=0.01) == []


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.tables += tag == "table"


def test_table_page_shows_table_plots_and_samples(small_demo, tmp_path: Path):
    table, _ = small_demo
    page = table.read_text(encoding="utf-8")
    for needle in ("L1+cGAN", "Ground truth", "Color distributions", "Samples"):
        assert needle in page
    parser = _Images()
    parser.feed(page)
    assert parser.tables >= 2
    assert {"color_L.png", "color_a.png", "color_b.png"} <= set(parser.images)
    assert sum(src.startswith("samples/") for src in parser.images) >= 8
    for src in parser.images:
        assert read_image(table.parent / src).size > 0  # every picture exists and decodes
    from pagecheck import assert_reads_well

    assert_reads_well(table, tmp_path / "table.png", min_images=11)  # 3 plots, 8+ samples; nothing wider than the window


def test_demo_config_rejects_bad_sizes():
    from p2ptools.errors import ConfigError

    with pytest.raises(ConfigError, match="power of two"):
        DemoConfig(size=48)
    with pytest.raises(ConfigError, match="at least 20"):
        DemoConfig(count=5)


def test_ordering_problems_names_each_broken_ordering(tmp_path: Path):
    from p2ptools.demo import ordering_problems

    header = "Loss,Per-pixel acc.,Per-class acc.,Class IOU,Color L,Color a,Color b,L1 (0-255)\n"
    good = tmp_path / "good.csv"
    good.write_text(header + "L1,0.50,0.1,0.10,0.5,0.6,0.6,30\nL1+cGAN,0.60,0.1,0.13,0.8,0.9,0.9,35\nGround truth,0.80,0.2,0.16,,,,\n")
    assert ordering_problems(good) == []
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "L1,0.50,0.1,0.12,0.5,0.95,0.6,30\nL1+cGAN,0.60,0.1,0.13,0.8,0.9,0.9,35\nGround truth,0.61,0.2,0.16,,,,\n")
    assert ordering_problems(bad) == [
        "Per-pixel acc.: Ground truth 0.610 is not 0.02 above L1+cGAN 0.600",
        "Class IOU: L1+cGAN 0.130 is not 0.02 above L1 0.120",
        "Color a: L1+cGAN 0.900 is not above L1 0.950",
    ]
    partial = tmp_path / "partial.csv"
    partial.write_text(header + "L1,0.50,0.1,0.12,0.5,0.95,0.6,30\n")
    assert ordering_problems(partial) == [f"{partial}: no row Ground truth, L1+cGAN (rows: L1)"]


def test_build_scenes_reuses_its_own_build_and_replaces_an_older_builders(tmp_path: Path):
    import json

    from p2ptools.errors import ConfigError
    from p2ptools.pairs import load_manifest

    config = DemoConfig(out=tmp_path, count=20, size=32, workers=1, progress=False)
    data = build_scenes(config)
    first = {p: p.stat().st_mtime_ns for p in data.rglob("*.png")}
    assert len(first) == 40 and load_manifest(data).builder["version"] == "2"
    assert build_scenes(config) == data and {p: p.stat().st_mtime_ns for p in data.rglob("*.png")} == first  # reused
    # an earlier demo's scenes (builder version 1: other pictures) are rebuilt, not reused or refused
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["builder"]["version"] = "1"
    (data / "manifest.json").write_text(json.dumps(manifest))
    (data / "train" / "mine.png").write_bytes(b"x")  # a file the builder did not write: refused, nothing deleted
    with pytest.raises(ConfigError, match=r"holds files p2ptools did not write \(train/mine.png\)"):
        build_scenes(config)
    assert (data / "train" / "mine.png").read_bytes() == b"x" and len(list(data.rglob("*.png"))) == 41
    (data / "train" / "mine.png").unlink()
    build_scenes(config)
    assert load_manifest(data).builder["version"] == "2"
    rebuilt = {p: p.stat().st_mtime_ns for p in data.rglob("*.png")}
    assert rebuilt.keys() == first.keys() and all(rebuilt[p] != first[p] for p in first)  # every file written anew
    # other options (here the count) are an earlier demo's too: rebuilt, with the new count
    build_scenes(DemoConfig(out=tmp_path, count=24, size=32, workers=1, progress=False))
    assert len(load_manifest(data).pairs) == 24 and len(list(data.rglob("*.png"))) == 48
