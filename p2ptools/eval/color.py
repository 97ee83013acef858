"""Lab color distributions (GUIDE.md section 6, paper Fig. 7): our documented protocol.

Protocol: ``skimage.color.rgb2lab`` (D65 white) of every pixel of every image, pooled; unit-width
bins; L over [0, 100], a and b over [-128, 128); values clipped into range; each marginal histogram
normalised to sum 1; score = histogram intersection ``sum(min(p, q))`` in [0, 1]. Bins follow
``np.histogram(np.clip(x, lo, hi), bins=n, range=(lo, hi))`` exactly (half-open bins, the last one
closed).

Speed: a pixel's bins depend only on its 24-bit color, so :class:`LabHistogram` keeps a lazily
filled 2^24-entry table color -> packed (L, a, b) bin indices (64 MB, shared by every histogram of
the same bins in the process). Each color is converted once, the first time it is seen, by
:func:`rgb_to_lab` (``rgb2lab``'s own arithmetic with the per-pixel power function replaced by a
256-entry lookup); after that an image costs one table gather and three ``np.bincount`` calls. The table is a
pure cache, kept on disk between runs (``$P2PTOOLS_CACHE``, default ``~/.cache/p2ptools``). The
counts are identical to the per-image protocol (tested against the direct computation).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import tempfile
import textwrap
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2ptools.cache import CACHE_ENV  # noqa: F401  (re-exported: the variable that moves every cache)
from p2ptools.imageio import write_bytes_atomic

CHANNELS = ("L", "a", "b")
_UNKNOWN = np.uint32(0xFFFFFFFF)
_BITS = 10  # bits per packed bin index: at most 1024 bins per channel
_TABLE_VERSION = 2  # v1 tables were filled through a (N, 1, 3) layout whose matrix product rounds differently


@dataclass(frozen=True)
class LabBins:
    """Bin layout: ``width``-wide bins over ``l_range`` for L and ``ab_range`` for a and b."""

    width: float = 1.0
    l_range: tuple[float, float] = (0.0, 100.0)
    ab_range: tuple[float, float] = (-128.0, 128.0)

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"bin width must be > 0, got {self.width}")
        for lo, hi in (self.l_range, self.ab_range):
            if not hi > lo:
                raise ValueError(f"empty range [{lo}, {hi})")
        if max(self.counts()) > 1 << _BITS:
            raise ValueError(f"at most {1 << _BITS} bins per channel, got {self.counts()} (width {self.width})")

    def ranges(self) -> tuple[tuple[float, float], ...]:
        return (self.l_range, self.ab_range, self.ab_range)

    def counts(self) -> tuple[int, ...]:
        """Number of bins of L, a, b."""
        return tuple(max(1, math.ceil((hi - lo) / self.width - 1e-9)) for lo, hi in self.ranges())

    def edges(self) -> tuple[np.ndarray, ...]:
        """Bin edges of L, a, b (as ``np.histogram`` computes them for ``range=`` and ``bins=``)."""
        return tuple(np.histogram_bin_edges([], bins=n, range=r) for n, r in zip(self.counts(), self.ranges(), strict=True))

    def to_dict(self) -> dict:
        return {"width": self.width, "L": list(self.l_range), "a": list(self.ab_range), "b": list(self.ab_range)}


def lab_bin_indices(lab: np.ndarray, bins: LabBins) -> list[np.ndarray]:
    """(..., 3) Lab values -> three intp arrays of bin indices, by ``np.histogram``'s own rule.

    Values are clipped into range; the index is computed from the uniform bin width and then
    corrected against the exact edges (as ``np.histogram`` does), so a value on an edge lands in
    the bin that starts there, and the upper end in the last bin.
    """
    out = []
    for ch, (edges, n, (lo, hi)) in enumerate(zip(bins.edges(), bins.counts(), bins.ranges(), strict=True)):
        x = np.clip(lab[..., ch], lo, hi)
        idx = ((x - edges[0]) * (n / (edges[-1] - edges[0]))).astype(np.intp)
        idx[idx == n] -= 1
        idx[x < edges[idx]] -= 1
        idx[(x >= edges[idx + 1]) & (idx != n - 1)] += 1
        out.append(idx)
    return out


@functools.cache
def _srgb_to_xyz() -> tuple[np.ndarray, np.ndarray]:
    """skimage's sRGB linearisation of the 256 8-bit values, and its (transposed) XYZ matrix."""
    from skimage.color.colorconv import xyz_from_rgb
    from skimage.util import img_as_float

    v = img_as_float(np.arange(256, dtype=np.uint8))
    linear = v / 12.92  # the same operations as skimage.color.rgb2xyz, on each 8-bit value once
    high = v > 0.04045
    linear[high] = np.power((v[high] + 0.055) / 1.055, 2.4)
    return linear, xyz_from_rgb.T.astype(np.float64)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 sRGB -> (N, 3) float64 CIELab (D65), bit for bit what ``skimage.color.rgb2lab``
    returns for the same pixels in an (H, W, 3) image, about 3x faster.

    skimage linearises every pixel with ``np.power``; here each of the 256 channel values is
    linearised once and looked up, then skimage's own matrix product and ``xyz2lab`` follow. (Equal
    on all 2^24 colors when checked exhaustively; the tests check a sample.)
    """
    from skimage.color import xyz2lab

    if rgb.dtype != np.uint8 or rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f"expected (N, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    linear, matrix = _srgb_to_xyz()
    return xyz2lab(linear[rgb] @ matrix, illuminant="D65")


class _ColorTable:
    """color code (r << 16 | g << 8 | b) -> packed bin indices, filled on first sight of a color.

    The table is a pure cache of ``rgb2lab`` + binning, so it is also kept on disk between runs
    (:func:`table_cache_path`): loaded when present, saved by :func:`save_color_tables`.
    """

    def __init__(self, bins: LabBins) -> None:
        self.bins = bins
        self.path = table_cache_path(bins)
        self.table = self._load()
        self.dirty = False

    def _load(self) -> np.ndarray:
        try:
            table = np.load(self.path, allow_pickle=False)
            if table.shape == (1 << 24,) and table.dtype == np.uint32:
                return table
        except (OSError, ValueError):
            pass
        return np.full(1 << 24, _UNKNOWN, np.uint32)

    def save(self) -> None:
        """Write the table to the cache (atomically; a read-only cache folder is not an error)."""
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=self.path.parent)
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, self.table, allow_pickle=False)
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:
            pass

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        packed = self.table[codes]
        missing = packed == _UNKNOWN
        if missing.any():
            todo = codes[missing]
            # distinct new colors without sorting: scatter positions into the table, keep the
            # positions that survived (one per color); _fill then overwrites those entries
            order = np.arange(len(todo), dtype=np.uint32)
            self.table[todo] = order
            self._fill(todo[self.table[todo] == order])
            packed[missing] = self.table[todo]
            self.dirty = True
        return packed

    def _fill(self, codes: np.ndarray) -> None:
        rgb = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)
        li, ai, bi = lab_bin_indices(rgb_to_lab(rgb), self.bins)
        self.table[codes] = li.astype(np.uint32) | (ai.astype(np.uint32) << _BITS) | (bi.astype(np.uint32) << (2 * _BITS))


_TABLES: dict[LabBins, _ColorTable] = {}


def table_cache_path(bins: LabBins) -> Path:
    """Where the color table of ``bins`` is cached: the user cache folder (:func:`p2ptools.cache.cache_root`,
    ``$P2PTOOLS_CACHE`` first) / ``lab-table-v<N>-skimage<version>-<bins hash>.npy`` (64 MB)."""
    import skimage

    from p2ptools.cache import cache_root

    root = cache_root()
    key = hashlib.sha256(json.dumps(bins.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return root / f"lab-table-v{_TABLE_VERSION}-skimage{skimage.__version__}-{key}.npy"


def _table(bins: LabBins) -> _ColorTable:
    if bins not in _TABLES:
        _TABLES[bins] = _ColorTable(bins)
    return _TABLES[bins]


def save_color_tables() -> None:
    """Save the color tables filled in this process to the on-disk cache (see :func:`table_cache_path`)."""
    for table in _TABLES.values():
        table.save()


def color_codes(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H*W,) int64 codes ``r << 16 | g << 8 | b``."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    flat = image.reshape(-1, 3)
    codes = flat[:, 0].astype(np.int64) << 16
    codes |= flat[:, 1].astype(np.int64) << 8
    codes |= flat[:, 2]
    return codes


class LabHistogram:
    """Streaming pooled L, a, b histograms of many RGB images.

    Example:
        >>> h = LabHistogram(); h.update(np.zeros((4, 4, 3), np.uint8))
        >>> float(h.probabilities()["L"][0])
        1.0
    """

    def __init__(self, bins: LabBins | None = None) -> None:
        self.bins = bins or LabBins()
        self.counts = {ch: np.zeros(n, np.int64) for ch, n in zip(CHANNELS, self.bins.counts(), strict=True)}

    @property
    def pixels(self) -> int:
        return int(self.counts["L"].sum())

    def update(self, image: np.ndarray) -> None:
        """Add the pixels of one (H, W, 3) uint8 RGB image (gray (H, W) images are expanded)."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        packed = _table(self.bins).lookup(color_codes(image))
        mask = np.uint32((1 << _BITS) - 1)
        for k, ch in enumerate(CHANNELS):
            idx = (packed >> np.uint32(k * _BITS)) & mask if k else packed & mask
            self.counts[ch] += np.bincount(idx, minlength=len(self.counts[ch]))

    def merge(self, other: LabHistogram) -> None:
        """Add another histogram's counts (same bins), e.g. from another process."""
        if other.bins != self.bins:
            raise ValueError("cannot merge histograms with different bins")
        for ch in CHANNELS:
            self.counts[ch] += other.counts[ch]

    def probabilities(self) -> dict[str, np.ndarray]:
        """Each channel's histogram normalised to sum 1 (all zeros when empty)."""
        total = self.pixels
        return {ch: (c / total if total else c.astype(np.float64)) for ch, c in self.counts.items()}


def intersection(p: np.ndarray, q: np.ndarray) -> float:
    """Histogram intersection ``sum(min(p, q))`` of two normalised histograms, in [0, 1]."""
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in length: {p.shape} vs {q.shape}")
    return float(np.minimum(p, q).sum())


def intersections(result: LabHistogram, ground_truth: LabHistogram) -> dict[str, float]:
    """``{"L", "a", "b"}`` intersections of a result histogram with the ground truth's."""
    p, q = result.probabilities(), ground_truth.probabilities()
    return {ch: intersection(p[ch], q[ch]) for ch in CHANNELS}


#: Curve colors of runs (matplotlib's tab10 without its grey, which is close to the dotted ground truth).
RUN_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def run_colors(names: Sequence[str]) -> dict[str, str]:
    """A stable color per run name: the palette entry its CRC-32 picks, the next free one when two
    names of ``names`` pick the same (while colors last). A run alone, as in its own report, always
    gets its name's own color, so it looks the same there as in a table beside others.

    Example:
        >>> run_colors(["L1"]) == {"L1": RUN_PALETTE[zlib.crc32(b"L1") % len(RUN_PALETTE)]}
        True
    """
    colors: dict[str, str] = {}
    for name in names:
        index = zlib.crc32(name.encode("utf-8")) % len(RUN_PALETTE)
        taken = set(colors.values())
        for step in range(len(RUN_PALETTE)):
            if RUN_PALETTE[(index + step) % len(RUN_PALETTE)] not in taken:
                index = (index + step) % len(RUN_PALETTE)
                break
        colors[name] = RUN_PALETTE[index]
    return colors


def plot_histograms(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    ground_truth: Mapping[str, np.ndarray] | None,
    out_dir: str | Path,
    bins: LabBins | None = None,
    *,
    prefix: str = "color",
    colors: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Log-probability plots, one PNG per channel: every curve solid, the ground truth dotted.

    Args:
        curves: label -> {"L", "a", "b"} normalised histograms (several runs overlaid).
        ground_truth: {"L", "a", "b"} of the real photos, or None.
        out_dir: folder for ``<prefix>_L.png``, ``<prefix>_a.png``, ``<prefix>_b.png``.
        colors: label -> matplotlib color (default :func:`run_colors` of the labels).

    Returns:
        channel -> written path.
    """
    from matplotlib.figure import Figure

    bins = bins or LabBins()
    colors = {**run_colors(list(curves)), **(colors or {})}
    out_dir = Path(out_dir)
    paths = {}
    for ch, edges in zip(CHANNELS, bins.edges(), strict=True):
        centers = (edges[:-1] + edges[1:]) / 2
        fig = Figure(figsize=(5, 3.2), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        for label, hist in curves.items():
            ax.plot(centers, _log(hist[ch]), linewidth=1.2, label=textwrap.fill(label, 34), color=colors[label])  # long labels wrap inside the axes
        if ground_truth is not None:
            ax.plot(centers, _log(ground_truth[ch]), linestyle=":", color="black", linewidth=1.6, label="ground truth")
        ax.set_xlabel(ch)
        ax.set_ylabel("log P")
        ax.set_title(f"{ch} distribution")
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = out_dir / f"{prefix}_{ch}.png"
        write_bytes_atomic(path, buf.getvalue())
        paths[ch] = path
    return paths


def _log(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, np.nan)
    np.log(p, out=out, where=p > 0)
    return out


def direct_histogram(images: Sequence[np.ndarray], bins: LabBins | None = None) -> dict[str, np.ndarray]:
    """Reference computation (slow): per-image ``rgb2lab`` + ``np.histogram`` of clipped values.

    Used by tests and the benchmark as the protocol's literal definition; returns int64 counts.
    """
    from skimage.color import rgb2lab

    bins = bins or LabBins()
    counts = {ch: np.zeros(n, np.int64) for ch, n in zip(CHANNELS, bins.counts(), strict=True)}
    for image in images:
        lab = rgb2lab(image, illuminant="D65")
        for k, (ch, n, (lo, hi)) in enumerate(zip(CHANNELS, bins.counts(), bins.ranges(), strict=True)):
            counts[ch] += np.histogram(np.clip(lab[..., k], lo, hi), bins=n, range=(lo, hi))[0]
    return counts
