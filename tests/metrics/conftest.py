"""Fixtures of the metric tests: tiny image sets (the weight files are session fixtures of
tests/conftest.py, made by tests/metric_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest


def smooth_images(n: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> list[np.ndarray]:
    """Blurred random uint8 RGB images (some structure, so resizing matters)."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        noise = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        images.append(cv2.GaussianBlur(noise, (5, 5), 1.5))
    return images


@pytest.fixture
def images():
    return smooth_images


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Keep caches out of the home folder."""
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path_factory.getbasetemp() / "p2ptools-cache"))
