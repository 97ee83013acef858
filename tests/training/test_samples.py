"""Training sample grids and their index page as a person reads them: named columns, gaps between
tiles, each epoch with its val_L1, small tiles shown scaled up."""

from __future__ import annotations

import json
import re

import numpy as np

from p2ptools.imageio import read_image
from p2ptools.training.samples import GAP, SHOWN_WIDTH, header_height, sample_grid, tile_origin, write_samples


def _tiles(value: int, n: int = 2, side: int = 64) -> list[np.ndarray]:
    return [np.full((side, side, 3), value + i, np.uint8) for i in range(n)]


def test_grid_has_a_header_naming_the_columns_and_gaps_between_tiles():
    inputs, outputs, targets = _tiles(10), _tiles(100), _tiles(200)
    grid = sample_grid(inputs, outputs, targets)
    top = header_height(64)
    assert grid.shape == (top + GAP + 2 * (64 + GAP), GAP + 3 * (64 + GAP), 3)
    for r in range(2):
        for c, images in enumerate((inputs, outputs, targets)):
            y, x = tile_origin(r, c, 64, 64)
            assert np.array_equal(grid[y : y + 64, x : x + 64], images[r]), (r, c)
            assert (grid[y - GAP : y, x : x + 64] == 255).all() and (grid[y : y + 64, x - GAP : x] == 255).all()  # white gaps
    header = grid[:top].astype(int)
    for c in range(3):  # some dark text over each column
        x = tile_origin(0, c, 64, 64)[1]
        assert (header[:, x : x + 64] < 128).any(), c
    assert (header[:, :GAP] == 255).all()


def test_grid_labels_fit_small_tiles():
    grid = sample_grid(*[_tiles(50, 1, 32)] * 3)
    top = header_height(32)
    for c in range(3):
        x = tile_origin(0, c, 32, 32)[1]
        gap = grid[:top, x + 32 : x + 32 + GAP]
        assert (gap == 255).all(), c  # no column name runs into the next


def test_index_lists_each_epoch_with_val_l1_scaled_up(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "log.jsonl").write_text(json.dumps({"step": 4, "epoch": 1, "val_L1": 0.5123}) + "\n")
    grid = sample_grid(*[_tiles(30)] * 3)
    write_samples(run / "samples", 1, grid)
    write_samples(run / "samples", 2, grid, val_l1=0.415)
    page = (run / "samples" / "index.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == ["epoch 2 · val_L1 0.4150", "epoch 1 · val_L1 0.5123"]  # newest first
    assert f"width:{SHOWN_WIDTH}px" in page and "image-rendering:pixelated" in page  # 64-px tiles shown scaled up
    assert "input | output | target" in page
    assert read_image(run / "samples" / "epoch_0002.png").shape == grid.shape
