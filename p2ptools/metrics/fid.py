"""Fréchet Inception Distance: streaming statistics in float64 and the distance itself.

:class:`GaussianStats` keeps the sum of the features, the sum of their outer products and the
count, so memory is flat in the number of images and shards add up exactly; the mean is
``sum / n`` and the covariance ``(outer - n mu mu^T) / (n - 1)`` (``np.cov``'s unbiased estimate, as
pytorch-fid uses). :func:`frechet_distance` is pytorch-fid's ``calculate_frechet_distance``: the
matrix square root by ``scipy.linalg.sqrtm``, ``eps`` added to both diagonals when the product is
singular, a negligible imaginary part dropped.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from p2ptools.metrics.state import StreamingMetric

#: Inception pool features per image.
FEATURE_DIM = 2048
#: Below this many images the 2048x2048 covariance is rank-deficient and FID strongly biased.
FID_MIN_IMAGES = 2048


class GaussianStats(StreamingMetric):
    """Streaming mean and covariance of ``dim``-dimensional features (float64)."""

    def __init__(self, dim: int = 2048) -> None:
        self.dim = dim
        self.sum = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)
        self.count = 0

    def update(self, features: np.ndarray) -> None:
        """Add a batch of features, shape (N, dim)."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features must have shape (N, {self.dim}), got {f.shape}")
        self.sum += f.sum(axis=0)
        self.outer += f.T @ f
        self.count += f.shape[0]

    def state(self) -> dict[str, np.ndarray]:
        return {"sum": self.sum.copy(), "outer": self.outer.copy(), "count": np.array([self.count], np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.sum = np.asarray(state["sum"], np.float64).copy()
        self.outer = np.asarray(state["outer"], np.float64).copy()
        self.count = int(np.asarray(state["count"]).reshape(-1)[0])
        self.dim = self.sum.shape[0]

    def mean(self) -> np.ndarray:
        """The feature mean, shape (dim,)."""
        if self.count < 1:
            raise ValueError("no features: the mean of an empty set is undefined")
        return self.sum / self.count

    def covariance(self) -> np.ndarray:
        """The unbiased covariance (``np.cov(features, rowvar=False)``), shape (dim, dim)."""
        if self.count < 2:
            raise ValueError(f"the covariance needs at least 2 images, got {self.count}")
        mu = self.mean()
        return (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)

    def result(self) -> dict[str, Any]:
        return {"n_images": self.count, "dim": self.dim}


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it:
    ``|mu1 - mu2|² + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.

    Raises:
        ValueError: shapes differ, or the square root has a significant imaginary part.

    Example:
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
        2.0
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"mismatched statistics: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled below
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():  # a singular product: regularise both, as pytorch-fid does
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the matrix square root has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    """FID between two sets of streamed features."""
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance())
