"""FID: streaming float64 statistics against np.cov, the distance against pytorch-fid's
calculate_frechet_distance, a set against itself, and a known shift."""

from __future__ import annotations

import numpy as np
import pytest

from p2ptools.metrics.fid import GaussianStats, fid_from_stats, frechet_distance
from p2ptools.metrics.state import add_states


def features(n=300, dim=32, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return (rng.standard_normal((n, dim)) @ mix + shift).astype(np.float32)


def stats_of(x, dim=32, batch=37):
    s = GaussianStats(dim)
    for i in range(0, len(x), batch):
        s.update(x[i : i + batch])
    return s


def test_streaming_stats_equal_numpy():
    x = features()
    s = stats_of(x)
    assert s.count == 300
    assert np.allclose(s.mean(), x.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    assert np.allclose(s.covariance(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)


def test_distance_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = features(seed=1), features(seed=2, shift=0.3)
    sa, sb = stats_of(a), stats_of(b)
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, s1, mu2, s2 = np.mean(a, 0), np.cov(a, rowvar=False), np.mean(b, 0), np.cov(b, rowvar=False)  # pytorch-fid's own statistics
    with pytest.warns(DeprecationWarning):  # pytorch-fid passes sqrtm's deprecated disp=False
        expected = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert fid_from_stats(sa, sb) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_singular_covariances_take_pytorch_fids_eps_path():
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = features(n=5, seed=3), features(n=5, seed=4)  # 5 samples in 32 dimensions: rank 4
    sa, sb = stats_of(a), stats_of(b)
    with pytest.warns(DeprecationWarning):
        expected = calculate_frechet_distance(sa.mean(), sa.covariance(), sb.mean(), sb.covariance())
    assert fid_from_stats(sa, sb) == pytest.approx(expected, rel=1e-6)


def test_set_against_itself_and_a_known_shift():
    x = features()
    s = stats_of(x)
    assert abs(fid_from_stats(s, s)) < 1e-6
    delta = np.linspace(-1, 1, 32).astype(np.float32)
    shifted = stats_of(x + delta)  # same covariance, mean moved by delta: FID = |delta|^2
    assert fid_from_stats(s, shifted) == pytest.approx(float(np.sum(delta.astype(np.float64) ** 2)), rel=1e-5)


def test_merged_shards_equal_the_whole():
    x = features(n=101)
    whole = stats_of(x)
    parts = [stats_of(x[r::3]) for r in range(3)]
    merged = GaussianStats(32)
    for p in parts:
        merged.merge(p)
    assert merged.count == 101
    assert np.allclose(merged.sum, whole.sum, rtol=1e-12) and np.allclose(merged.outer, whole.outer, rtol=1e-12)
    with pytest.raises(ValueError, match="differ in their keys"):
        add_states(whole.state(), {"sum": whole.sum})


def test_too_few_images():
    s = stats_of(features(n=1))
    with pytest.raises(ValueError, match="at least 2 images"):
        s.covariance()
    with pytest.raises(ValueError, match="shape"):
        s.update(np.zeros((2, 5)))
