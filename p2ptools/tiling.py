"""Translate an image of any size in overlapping tiles, blended with a smooth window (pure functions).

The image is reflection-padded at the bottom and right to a multiple of the network's size multiple
(at least one tile), cut into ``tile`` x ``tile`` tiles that start every ``step`` pixels (``tile -
overlap`` rounded down to the size multiple, so every tile sees the strided convolutions' grid of the
whole image; the last tile of a row or column is flush with the padded edge), translated
``batch_size`` tiles at a time, and blended: each output pixel is the average of the tiles covering
it, weighted by a raised-cosine window (``sin^2``) that rises over the overlap at the tile edges
inside the image. The output is cropped back to the image's size. Peak memory is one batch of
tiles through the network plus the float32 accumulators of the output (12 bytes per RGB pixel).

What tiling preserves (README "Translating large images"): a network whose output at a pixel
depends only on a bounded neighbourhood (convolutions, batch norm with running statistics) gives
the untiled result wherever the overlap covers that neighbourhood; instance norm and batch
statistics normalise each tile by its own statistics, so tiles differ from the whole image
everywhere, and the window only hides the seams.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from p2ptools.errors import ConfigError

#: without ``--tile``, images of more pixels than this get a hint to tile them
HINT_PIXELS = 2048 * 2048

TranslateBatch = Callable[[list[np.ndarray], list[dict[str, np.ndarray]]], list[np.ndarray]]


@dataclass(frozen=True)
class Tiling:
    """``tile`` x ``tile`` tiles (a multiple of ``unit``, the network's size multiple) overlapping by
    at least ``overlap`` pixels."""

    tile: int
    overlap: int
    unit: int = 1

    def __post_init__(self) -> None:
        if self.unit < 1:
            raise ConfigError(f"size multiple must be positive, got {self.unit}")
        if self.tile < 1 or self.tile % self.unit:
            raise ConfigError(f"--tile {self.tile}: must be a positive multiple of the network's size multiple {self.unit}")
        if not 0 <= self.overlap < self.tile:
            raise ConfigError(f"--overlap {self.overlap}: must be at least 0 and below --tile {self.tile}")

    @property
    def step(self) -> int:
        """Pixels between tile starts: ``tile - overlap`` rounded down to the size multiple (at least one)."""
        return max(self.unit, (self.tile - self.overlap) // self.unit * self.unit)


def padded_size(length: int, tiling: Tiling) -> int:
    """The length an image side is padded to: a multiple of the size multiple, at least one tile."""
    return max(tiling.tile, math.ceil(length / tiling.unit) * tiling.unit)


def tile_starts(length: int, tiling: Tiling) -> list[int]:
    """Starts of the tiles along a (padded) side of ``length`` pixels, the last flush with its end."""
    if length <= tiling.tile:
        return [0]
    starts = list(range(0, length - tiling.tile, tiling.step))
    return starts + [length - tiling.tile]


def window(tile: int, rise: int, fall: int) -> np.ndarray:
    """1-D blending weights of a tile: ``sin^2`` rising over the first ``rise`` pixels, falling over
    the last ``fall``, 1 between; always positive (0 < w <= 1)."""
    w = np.ones(tile, dtype=np.float64)
    for ramp, sl in ((rise, slice(0, rise)), (fall, slice(tile - fall, tile))):
        if ramp > 0:
            edge = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
            w[sl] = np.minimum(w[sl], edge if sl.start == 0 else edge[::-1])
    return w


def _axis_windows(length: int, tiling: Tiling) -> list[tuple[int, np.ndarray]]:
    starts = tile_starts(length, tiling)
    out = []
    for i, s in enumerate(starts):
        before = starts[i - 1] + tiling.tile - s if i else 0  # overlap with the previous tile
        after = s + tiling.tile - starts[i + 1] if i + 1 < len(starts) else 0
        out.append((s, window(tiling.tile, before, after)))
    return out


def _pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    ph, pw = height - image.shape[0], width - image.shape[1]
    if not ph and not pw:
        return image
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="reflect" if min(image.shape[:2]) > 1 else "edge")


def tiles(height: int, width: int, tiling: Tiling) -> Iterator[tuple[int, int, np.ndarray]]:
    """(top, left, 2-D weights) of every tile of a ``height`` x ``width`` image (padded sizes)."""
    rows, cols = _axis_windows(padded_size(height, tiling), tiling), _axis_windows(padded_size(width, tiling), tiling)
    for top, wy in rows:
        for left, wx in cols:
            yield top, left, np.outer(wy, wx)


def coverage(height: int, width: int, tiling: Tiling) -> np.ndarray:
    """How many tiles cover each pixel of a ``height`` x ``width`` image ((H, W) int): 1 in tile
    interiors, more along the seams (where tiles are blended)."""
    count = np.zeros((padded_size(height, tiling), padded_size(width, tiling)), dtype=np.int32)
    for top, left, _ in tiles(height, width, tiling):
        count[top:top + tiling.tile, left:left + tiling.tile] += 1
    return count[:height, :width]


def translate_tiled(image: np.ndarray, translate: TranslateBatch, tiling: Tiling, *, batch_size: int = 1,
                    extras: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Translate ``image`` (H, W[, C]) uint8 tile by tile (module docstring).

    ``translate(tiles, tile_extras)`` maps a list of at most ``batch_size`` uint8 tiles (and their
    cut-out ``extras`` maps) to uint8 outputs of the tiles' size, (T, T, C) or (T, T).
    Returns the blended uint8 output of the image's height and width.

    >>> out = translate_tiled(np.zeros((100, 70, 3), np.uint8), lambda t, e: t, Tiling(64, 16, 32))
    >>> out.shape
    (100, 70, 3)
    """
    if image.ndim not in (2, 3):
        raise ConfigError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    height, width = padded_size(h, tiling), padded_size(w, tiling)
    padded = _pad(image, height, width)
    maps = {k: _pad(np.asarray(v), height, width) for k, v in (extras or {}).items()}
    acc: np.ndarray | None = None
    total = np.zeros((height, width), dtype=np.float32)
    t = tiling.tile
    pending: list[tuple[int, int, np.ndarray]] = []

    def flush() -> None:
        nonlocal acc
        outs = translate([padded[y:y + t, x:x + t] for y, x, _ in pending],
                         [{k: v[y:y + t, x:x + t] for k, v in maps.items()} for y, x, _ in pending])
        for (y, x, weight), out in zip(pending, outs, strict=True):
            out = out.reshape(t, t, -1)
            if acc is None:
                acc = np.zeros((height, width, out.shape[2]), dtype=np.float32)
            acc[y:y + t, x:x + t] += weight[:, :, None].astype(np.float32) * out
            total[y:y + t, x:x + t] += weight
        pending.clear()

    for item in tiles(h, w, tiling):
        pending.append(item)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    assert acc is not None
    result = np.clip(np.round(acc[:h, :w] / total[:h, :w, None]), 0, 255).astype(np.uint8)
    return result[:, :, 0] if result.shape[2] == 1 else result


def size_hint(height: int, width: int, budget: int | None = None) -> str | None:
    """A one-line hint for an image above ``budget`` pixels (default :data:`HINT_PIXELS`) translated whole, else None."""
    budget = HINT_PIXELS if budget is None else budget
    if height * width <= budget:
        return None
    return (f"a {width}x{height} input ({height * width / 1e6:.1f} MP) is above {budget / 1e6:.1f} MP: whole-image "
            "translation needs memory in proportion; --tile 512 --overlap 64 bounds it to one batch of tiles")


def seam_error(tiled: np.ndarray, whole: np.ndarray, cover: np.ndarray) -> dict[str, float]:
    """Max and mean |tiled - whole| (uint8 levels) in tile interiors (``cover == 1``) and along the
    seams (``cover > 1``)."""
    diff = np.abs(tiled.astype(np.int16) - whole.astype(np.int16))
    diff = diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2)
    inner, seam = diff[cover == 1], diff[cover > 1]
    return {"interior_max": float(inner.max()) if inner.size else 0.0, "interior_mean": float(inner.mean()) if inner.size else 0.0,
            "seam_max": float(seam.max()) if seam.size else 0.0, "seam_mean": float(seam.mean()) if seam.size else 0.0}
