"""Kernel Inception Distance: the unbiased MMD² with the cubic polynomial kernel
``k(x, y) = (x·y / d + 1)³`` over random subsets, as torch-fidelity computes it.

Defaults are torch-fidelity's: 100 subsets of ``min(1000, n)`` images drawn without replacement by
``np.random.RandomState(seed)`` (first set, then second set, subset after subset), the mean and the
(population) standard deviation of the subsets' MMD² values. Kernels are evaluated in float64.

The features stay on disk: :class:`FeatureFile` writes one ``.npy`` (2048 float32 per image) while
the images stream by, and :class:`FeatureSet` reads the rows of a subset back through ``np.memmap``
from one or several such files (shards, ranks) in the images' global order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
#: torch-fidelity's default ``rng_seed``.
KID_SEED = 2020


class FeatureFile:
    """A (rows, dim) float32 ``.npy`` written row by row (``np.lib.format.open_memmap``)."""

    def __init__(self, path: str | Path, rows: int, dim: int = 2048) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=(rows, dim))
        self.filled = 0

    def append(self, features: np.ndarray) -> None:
        n = features.shape[0]
        if self.filled + n > self.array.shape[0]:
            raise ValueError(f"{self.path}: more rows than the {self.array.shape[0]} announced")
        self.array[self.filled : self.filled + n] = features
        self.filled += n

    def close(self) -> Path:
        """Flush to disk; the file must be full."""
        if self.filled != self.array.shape[0]:
            raise ValueError(f"{self.path}: {self.filled} of {self.array.shape[0]} rows written")
        self.array.flush()
        del self.array
        return self.path


@dataclass(frozen=True)
class FeaturePart:
    """One ``.npy`` of features and the global position of each of its rows."""

    path: Path
    positions: np.ndarray


class FeatureSet:
    """The features of one set of images, stored in one or more parts, read by global position."""

    def __init__(self, parts: list[FeaturePart]) -> None:
        self.parts = parts
        total = sum(len(p.positions) for p in parts)
        self.part_of = np.full(total, -1, np.int64)
        self.row_of = np.zeros(total, np.int64)
        for k, part in enumerate(parts):
            pos = np.asarray(part.positions, np.int64)
            if pos.size and (pos.min() < 0 or pos.max() >= total or (self.part_of[pos] >= 0).any()):
                raise ValueError(f"{part.path}: positions overlap other parts or leave gaps")
            self.part_of[pos] = k
            self.row_of[pos] = np.arange(pos.size)
        if (self.part_of < 0).any():
            raise ValueError("the parts leave gaps in the positions")
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def single(cls, path: str | Path) -> FeatureSet:
        n = np.load(path, mmap_mode="r").shape[0]
        return cls([FeaturePart(Path(path), np.arange(n))])

    def __len__(self) -> int:
        return int(self.part_of.size)

    def _map(self, k: int) -> np.ndarray:
        if k not in self._maps:
            self._maps[k] = np.load(self.parts[k].path, mmap_mode="r")
        return self._maps[k]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Rows at ``positions`` (in that order) as float64, shape (len(positions), dim)."""
        positions = np.asarray(positions, np.int64)
        parts, rows = self.part_of[positions], self.row_of[positions]
        out: np.ndarray | None = None
        for k in np.unique(parts):
            sel = parts == k
            block = np.asarray(self._map(int(k))[rows[sel]], np.float64)
            if out is None:
                out = np.empty((positions.size, block.shape[1]), np.float64)
            out[sel] = block
        return out if out is not None else np.zeros((0, 0), np.float64)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """``(x y^T / d + coef0) ** degree`` with d the feature dimension."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equally sized samples with the cubic polynomial kernel (the diagonal of
    the within-set kernels left out, the cross term over all pairs)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid(a: FeatureSet | np.ndarray, b: FeatureSet | np.ndarray, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED) -> dict[str, float | int]:
    """KID mean and std over ``subsets`` random subsets of ``min(subset_size, len(a), len(b))``.

    Raises:
        ValueError: fewer than 2 images in either set.
    """
    take_a = a.take if isinstance(a, FeatureSet) else (lambda idx: np.asarray(a[idx], np.float64))
    take_b = b.take if isinstance(b, FeatureSet) else (lambda idx: np.asarray(b[idx], np.float64))
    n_a, n_b = len(a), len(b)
    m = min(subset_size, n_a, n_b)
    if m < 2:
        raise ValueError(f"KID needs at least 2 images in each set, got {n_a} and {n_b}")
    rng = np.random.RandomState(seed)
    values = np.zeros(subsets, np.float64)
    for i in range(subsets):
        ia = rng.choice(n_a, m, replace=False)
        ib = rng.choice(n_b, m, replace=False)
        values[i] = mmd2_unbiased(take_a(ia), take_b(ib))
    return {"mean": float(values.mean()), "std": float(values.std()), "subsets": subsets, "subset_size": m, "seed": seed}
