"""Lab color protocol: the table-based streaming histogram equals the direct per-image computation."""

from __future__ import annotations

import numpy as np
import pytest

from p2ptools.eval.color import CHANNELS, LabBins, LabHistogram, intersection, intersections, plot_histograms, rgb_to_lab


def direct(images, bins=LabBins()):
    """The protocol literally: rgb2lab per image, clip, np.histogram, pooled."""
    from skimage.color import rgb2lab

    out = {ch: 0 for ch in CHANNELS}
    for image in images:
        lab = rgb2lab(image)
        for k, (ch, n, (lo, hi)) in enumerate(zip(CHANNELS, bins.counts(), bins.ranges(), strict=True)):
            out[ch] = out[ch] + np.histogram(np.clip(lab[..., k], lo, hi), bins=n, range=(lo, hi))[0]
    return out


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(4)]
    grays = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)  # a = b = 0: on a bin edge
    corners = np.array([[[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)]], np.uint8)
    smooth = np.clip(rng.normal(120, 20, (32, 32, 3)), 0, 255).astype(np.uint8)  # many repeated colors
    return imgs + [grays, corners, smooth]


def test_default_bins():
    assert LabBins().counts() == (100, 256, 256)
    edges = LabBins().edges()
    assert edges[0][0] == 0 and edges[0][-1] == 100 and edges[1][0] == -128 and edges[1][-1] == 128


@pytest.mark.parametrize("bins", [LabBins(), LabBins(width=2.5)])
def test_streaming_histogram_equals_direct_computation(images, bins):
    hist = LabHistogram(bins)
    for image in images:
        hist.update(image)
    ref = direct(images, bins)
    for ch in CHANNELS:
        np.testing.assert_array_equal(hist.counts[ch], ref[ch])
    assert hist.pixels == sum(im.shape[0] * im.shape[1] for im in images)
    # colors seen before come from the table: a second pass gives exactly twice the counts
    for image in images:
        hist.update(image)
    for ch in CHANNELS:
        np.testing.assert_array_equal(hist.counts[ch], 2 * ref[ch])


def test_probabilities_and_intersection(images):
    a, b = LabHistogram(), LabHistogram()
    a.update(images[0])
    b.update(images[0])
    assert intersections(a, b) == pytest.approx({"L": 1.0, "a": 1.0, "b": 1.0})
    p = a.probabilities()
    assert all(p[ch].sum() == pytest.approx(1.0) for ch in CHANNELS)
    black, white = LabHistogram(), LabHistogram()
    black.update(np.zeros((4, 4, 3), np.uint8))
    white.update(np.full((4, 4, 3), 255, np.uint8))
    assert intersections(black, white)["L"] == 0.0
    q = white.probabilities()
    assert intersection(p["L"], q["L"]) == pytest.approx(np.minimum(p["L"], q["L"]).sum())


def test_merge_adds_counts(images):
    a, b, both = LabHistogram(), LabHistogram(), LabHistogram()
    a.update(images[0])
    b.update(images[1])
    both.update(images[0])
    both.update(images[1])
    a.merge(b)
    for ch in CHANNELS:
        np.testing.assert_array_equal(a.counts[ch], both.counts[ch])


def test_gray_images_are_expanded():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    a, b = LabHistogram(), LabHistogram()
    a.update(gray)
    b.update(np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(a.counts["L"], b.counts["L"])


def test_bad_input_and_bins():
    with pytest.raises(ValueError, match="uint8"):
        LabHistogram().update(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="width"):
        LabBins(width=0)


def test_plots_one_png_per_channel(tmp_path, images):
    a, gt = LabHistogram(), LabHistogram()
    a.update(images[0])
    gt.update(images[1])
    paths = plot_histograms({"run A": a.probabilities(), "run B": gt.probabilities()}, gt.probabilities(), tmp_path)
    assert sorted(paths) == ["L", "a", "b"]
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 2000


def test_color_table_cache_round_trip(tmp_path, monkeypatch, images):
    from p2ptools.eval import color as color_mod

    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(color_mod, "_TABLES", {})
    bins = LabBins(width=4.0)
    first = LabHistogram(bins)
    first.update(images[0])
    color_mod.save_color_tables()
    path = color_mod.table_cache_path(bins)
    assert path.is_file() and path.parent == tmp_path / "cache"
    monkeypatch.setattr(color_mod, "_TABLES", {})
    table = color_mod._table(bins)
    assert not table.dirty and (table.table != 0xFFFFFFFF).sum() == len(np.unique(color_mod.color_codes(images[0])))
    again = LabHistogram(bins)
    again.update(images[0])
    for ch in CHANNELS:
        np.testing.assert_array_equal(again.counts[ch], first.counts[ch])
    # a damaged cache file is ignored (the table is rebuilt), never trusted
    path.write_bytes(b"garbage")
    monkeypatch.setattr(color_mod, "_TABLES", {})
    fresh = LabHistogram(bins)
    fresh.update(images[0])
    np.testing.assert_array_equal(fresh.counts["L"], first.counts["L"])


def test_rgb_to_lab_is_bitwise_skimage_rgb2lab():
    """The table's converter against skimage itself: 393,216 random colors laid out as images of two
    widths (one odd), every value equal to the last bit. (The same holds for all 2^24 colors.)"""
    from skimage.color import rgb2lab

    rng = np.random.default_rng(5)
    colors = rng.integers(0, 256, (393_216, 3), dtype=np.uint8)
    got = rgb_to_lab(colors)
    for width in (512, 331):
        n = len(colors) // width * width
        ref = rgb2lab(colors[:n].reshape(-1, width, 3)).reshape(-1, 3)
        assert np.array_equal(got[:n], ref)
    with pytest.raises(ValueError, match=r"\(N, 3\) uint8"):
        rgb_to_lab(colors.astype(np.float32))
