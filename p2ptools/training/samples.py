"""Sample grids written during training: rows of input | output | target, plus an index.html."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from p2ptools.imageio import to_rgb, write_image, write_text_atomic


def sample_grid(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> np.ndarray:
    """One row per sample, ``input | output | target``, as an RGB uint8 image.

    Args:
        inputs, outputs, targets: uint8 images (H, W) or (H, W, 3), all of one size.

    Returns:
        (rows * H, 3 * W, 3) uint8.
    """
    if not (len(inputs) == len(outputs) == len(targets)) or not inputs:
        raise ValueError(f"need equal, non-zero numbers of images, got {len(inputs)}, {len(outputs)}, {len(targets)}")
    rows = []
    for row in zip(inputs, outputs, targets, strict=True):
        images = [to_rgb(image) for image in row]
        if len({image.shape for image in images}) != 1:
            raise ValueError(f"images of one row differ in size: {[image.shape for image in images]}")
        rows.append(np.concatenate(images, axis=1))
    return np.concatenate(rows, axis=0)


def write_samples(samples_dir: Path, epoch: int, grid: np.ndarray) -> Path:
    """Write ``samples/epoch_<NNNN>.png`` and refresh ``samples/index.html`` (newest first)."""
    samples_dir = Path(samples_dir)
    path = samples_dir / f"epoch_{epoch:04d}.png"
    write_image(path, grid)
    pngs = sorted((p for p in samples_dir.glob("epoch_*.png")), reverse=True)
    items = "\n".join(
        f'<h2>{html.escape(p.stem.replace("_", " "))}</h2>\n<img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}">'
        for p in pngs
    )
    page = (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pix2pix samples</title>\n"
        "<style>body{font-family:sans-serif} img{image-rendering:pixelated;max-width:100%}</style></head>\n"
        "<body><h1>Samples: input | output | target</h1>\n" + items + "\n</body></html>\n"
    )
    write_text_atomic(samples_dir / "index.html", page)
    return path
