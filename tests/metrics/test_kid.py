"""KID: equal to torch-fidelity's kid_features_to_metric on the same features and subsets,
unbiased on two halves of one set, features read back from .npy parts on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2ptools.metrics.kid import (
    FeatureFile,
    FeaturePart,
    FeatureSet,
    kid,
    mmd2_unbiased,
)


def features(n, dim=64, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) + shift).astype(np.float32)


def torch_fidelity_kid(a, b, subsets, size, seed):
    from torch_fidelity.metric_kid import kid_features_to_metric

    kwargs = {"kid_subsets": subsets, "kid_subset_size": size, "rng_seed": seed, "verbose": False,
              "kid_kernel": "poly", "kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}  # fmt: skip
    out = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), **kwargs)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def test_equal_to_torch_fidelity():
    a, b = features(60, seed=1), features(50, seed=2, shift=0.2)
    ours = kid(a, b, subsets=20, subset_size=40, seed=7)
    mean, std = torch_fidelity_kid(a.astype(np.float64), b.astype(np.float64), 20, 40, 7)
    assert ours["mean"] == pytest.approx(mean, rel=1e-9) and ours["std"] == pytest.approx(std, rel=1e-9)
    mean32, _ = torch_fidelity_kid(a, b, 20, 40, 7)  # torch-fidelity's float32 kernels: same to float32 precision
    assert ours["mean"] == pytest.approx(mean32, rel=1e-4)
    assert ours["subset_size"] == 40 and ours["seed"] == 7


def test_subset_size_is_capped_by_the_smaller_set():
    a, b = features(30, seed=1), features(25, seed=2)
    ours = kid(a, b, subsets=5, subset_size=1000, seed=0)
    mean, std = torch_fidelity_kid(a.astype(np.float64), b.astype(np.float64), 5, 25, 0)
    assert ours["subset_size"] == 25 and ours["mean"] == pytest.approx(mean, rel=1e-9)


def test_unbiased_on_two_halves_of_one_set():
    x = features(400, dim=16, seed=3)
    same = kid(x[:200], x[200:], subsets=50, subset_size=100, seed=0)
    shifted = kid(x[:200], x[200:] + 0.5, subsets=50, subset_size=100, seed=0)
    assert abs(same["mean"]) < same["std"]  # no positive bias: a biased MMD² would sit well above 0
    assert shifted["mean"] > 5 * shifted["std"] > 0


def test_mmd2_against_a_loop():
    x, y = features(6, dim=4, seed=4).astype(np.float64), features(6, dim=4, seed=5).astype(np.float64)
    k = lambda u, v: (u @ v / 4 + 1) ** 3
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_features_on_disk_in_strided_parts(tmp_path):
    x = features(23, dim=8, seed=6)
    parts = []
    for r in range(3):  # rank r holds rows r, r + 3, ...: written in two appends
        rows = x[r::3]
        f = FeatureFile(tmp_path / f"part{r}.npy", len(rows), 8)
        f.append(rows[:2])
        f.append(rows[2:])
        parts.append(FeaturePart(f.close(), np.arange(r, 23, 3)))
    store = FeatureSet(parts)
    assert len(store) == 23
    idx = np.array([22, 0, 5, 7, 1])
    assert np.array_equal(store.take(idx), x[idx].astype(np.float64))
    y = features(23, dim=8, seed=7)
    assert kid(store, y, subsets=4, subset_size=10, seed=1) == kid(x, y, subsets=4, subset_size=10, seed=1)
    with pytest.raises(ValueError, match="gaps"):
        FeatureSet(parts[:2])
    with pytest.raises(ValueError, match="at least 2"):
        kid(x[:1], y, subsets=1)
