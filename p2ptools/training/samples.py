"""Sample grids written during training: rows of input | output | target, plus an index.html.

A grid is a picture a person can read on its own (it also goes to TensorBoard and W&B): a header
strip names the three columns, and a :data:`GAP`-pixel white gap separates the tiles.
``samples/index.html`` lists the epochs newest first, each with its validation L1 (from
``log.jsonl``), the grids scaled up to a readable size with sharp pixels.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from p2ptools.imageio import to_rgb, write_image, write_text_atomic

#: White pixels between tiles and around the grid.
GAP = 4
COLUMNS = ("input", "output", "target")
#: Width (CSS pixels) that index.html shows every grid at (small tiles are scaled up, pixelated).
SHOWN_WIDTH = 768


def header_height(tile_width: int) -> int:
    """Height of the header strip that names the columns, for tiles ``tile_width`` wide."""
    return max(12, round(_font_scale(tile_width) * 24) + 6)


def _font_scale(tile_width: int) -> float:
    """The largest font scale (up to 0.5) at which the longest column name fits a tile."""
    (width, _), _ = cv2.getTextSize(max(COLUMNS, key=len), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    return min(0.5, 0.9 * tile_width / width)


def tile_origin(row: int, column: int, tile_height: int, tile_width: int) -> tuple[int, int]:
    """(y, x) of the top-left pixel of tile (``row``, ``column``) in a grid of such tiles."""
    return (header_height(tile_width) + GAP + row * (tile_height + GAP), GAP + column * (tile_width + GAP))


def sample_grid(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> np.ndarray:
    """One row per sample, ``input | output | target``, under a header naming the columns, as an RGB
    uint8 image with :data:`GAP` white pixels between the tiles.

    Args:
        inputs, outputs, targets: uint8 images (H, W) or (H, W, 3), all of one size.

    Returns:
        (header + GAP + rows * (H + GAP), GAP + 3 * (W + GAP), 3) uint8; tile (r, c) starts at
        :func:`tile_origin`.

    Example:
        >>> tile = np.zeros((32, 32, 3), np.uint8)
        >>> sample_grid([tile], [tile], [tile]).shape
        (55, 112, 3)
    """
    if not (len(inputs) == len(outputs) == len(targets)) or not inputs:
        raise ValueError(f"need equal, non-zero numbers of images, got {len(inputs)}, {len(outputs)}, {len(targets)}")
    rows = [[to_rgb(image) for image in row] for row in zip(inputs, outputs, targets, strict=True)]
    shapes = {image.shape for row in rows for image in row}
    if len(shapes) != 1:
        raise ValueError(f"sample images differ in size: {sorted(shapes)}")
    h, w = rows[0][0].shape[:2]
    top = header_height(w)
    grid = np.full((top + GAP + len(rows) * (h + GAP), GAP + 3 * (w + GAP), 3), 255, np.uint8)
    scale = _font_scale(w)
    for c, name in enumerate(COLUMNS):
        (text_w, text_h), descent = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = GAP + c * (w + GAP) + max(0, (w - text_w) // 2)
        baseline = min(top - descent - 1, (top + text_h - descent) // 2 + 1)  # descenders stay in the strip
        cv2.putText(grid, name, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 40), 1, cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = tile_origin(r, c, h, w)
            grid[y : y + h, x : x + w] = image
    return grid


def _val_l1_by_epoch(log_path: Path) -> dict[int, float]:
    """Epoch -> validation L1 from a run's ``log.jsonl`` (lines that do not parse are skipped)."""
    scores: dict[int, float] = {}
    try:
        lines = log_path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return scores
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "val_L1" in record and "epoch" in record:
            scores[int(record["epoch"])] = float(record["val_L1"])
    return scores


def write_samples(samples_dir: Path, epoch: int, grid: np.ndarray, val_l1: float | None = None) -> Path:
    """Write ``samples/epoch_<NNNN>.png`` and refresh ``samples/index.html`` (newest first).

    ``val_l1``: this epoch's validation L1 (earlier epochs' come from the run's ``log.jsonl``)."""
    samples_dir = Path(samples_dir)
    path = samples_dir / f"epoch_{epoch:04d}.png"
    write_image(path, grid)
    scores = _val_l1_by_epoch(samples_dir.parent / "log.jsonl")
    if val_l1 is not None:
        scores[epoch] = float(val_l1)
    items = []
    for png in sorted(samples_dir.glob("epoch_*.png"), reverse=True):
        number = int(png.stem.removeprefix("epoch_")) if png.stem.removeprefix("epoch_").isdigit() else None
        score = f" · val_L1 {scores[number]:.4f}" if number in scores else ""
        items.append(f'<h2>epoch {number if number is not None else html.escape(png.stem)}{score}</h2>\n'
                     f'<img src="{html.escape(png.name)}" alt="{html.escape(png.stem)}: input | output | target">')
    page = (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>samples</title>\n"
        f"<style>body{{font-family:sans-serif;margin:1em}} img{{image-rendering:pixelated;width:{SHOWN_WIDTH}px;max-width:100%}}</style>"
        "</head>\n<body><h1>Samples: input | output | target</h1>\n"
        "<p>Validation pairs at the end of each epoch, newest first; val_L1: mean absolute error on the validation pairs "
        "(images in [-1, 1]).</p>\n" + "\n".join(items) + "\n</body></html>\n"
    )
    write_text_atomic(samples_dir / "index.html", page)
    return path
