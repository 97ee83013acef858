"""Image metrics: L1 / PSNR against direct formulas, SSIM settings, streaming means, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from p2ptools.eval.metrics import MetricsAccumulator, image_metrics


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_l1_and_psnr_match_formulas(pair):
    a, b = pair
    m = image_metrics(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    assert m["l1"] == pytest.approx(np.abs(diff).mean())
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / (diff**2).mean()))


def test_ssim_uses_gaussian_window_and_data_range_255(pair):
    a, b = pair
    expected = structural_similarity(b, a, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    uniform = structural_similarity(b, a, channel_axis=2, data_range=255)
    m = image_metrics(a, b)
    assert m["ssim"] == pytest.approx(expected)
    assert m["ssim"] != pytest.approx(uniform)
    assert image_metrics(a, a)["ssim"] == pytest.approx(1.0)


def test_identical_images_have_infinite_psnr_reported_as_none(pair):
    a, _ = pair
    assert image_metrics(a, a)["psnr"] == math.inf
    acc = MetricsAccumulator()
    acc.update(a, a)
    assert acc.result()["psnr"] is None and acc.result()["l1"] == 0.0


def test_accumulator_means(pair):
    a, b = pair
    small_a, small_b = a[:16, :16], b[:16, :16]
    acc = MetricsAccumulator()
    m1, m2 = acc.update(a, b), acc.update(small_a, small_b)
    r = acc.result()
    pixels = (24 * 32, 16 * 16)
    assert r["l1"] == pytest.approx((m1["l1"] * pixels[0] + m2["l1"] * pixels[1]) / sum(pixels))  # pooled over pixels
    assert r["psnr"] == pytest.approx((m1["psnr"] + m2["psnr"]) / 2)
    assert r["ssim"] == pytest.approx((m1["ssim"] + m2["ssim"]) / 2)
    assert r["n_images"] == 2 and "sigma 1.5" in r["protocol"]
    clone = MetricsAccumulator()
    clone.load_array(acc.as_array())
    assert clone.result() == r


def test_errors(pair):
    a, b = pair
    with pytest.raises(ValueError, match="32x24 but the reference is 16x24"):
        image_metrics(a, b[:, :16])
    with pytest.raises(ValueError, match="smaller than SSIM"):
        image_metrics(a[:8, :8], b[:8, :8])
    with pytest.raises(ValueError, match="uint8"):
        image_metrics(a.astype(np.float32), b)


def test_one_identical_image_does_not_turn_the_set_psnr_into_null(pair):
    """Issue 9.9: the mean PSNR is over the images that differ; identical ones are counted apart."""
    a, b = pair
    acc = MetricsAccumulator()
    m = acc.update(a, b)
    acc.update(a, a)
    r = acc.result()
    assert r["psnr"] == pytest.approx(m["psnr"]) and r["psnr_identical"] == 1 and r["n_images"] == 2
