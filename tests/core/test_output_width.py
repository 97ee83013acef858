"""Output that is not a terminal is never hard-wrapped: table rows and paths stay whole."""

from __future__ import annotations

import io

import cv2
import numpy as np
from rich.table import Table

from p2ptools import registry
from p2ptools.progress import OutputConsole


def test_tables_get_the_width_they_need_off_a_terminal(cli):
    res = cli("datasets")
    assert res.code == 0
    rows = res.stdout.splitlines()
    for item in registry.list_plugins("datasets"):
        assert any(item.name in row and item.summary in row for row in rows), item.name  # one row, one line
    assert max(map(len, rows)) > 100


def test_long_paths_stay_on_one_line(cli, tmp_path):
    rng = np.random.default_rng(0)
    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        cv2.imwrite(str(tmp_path / side / "0.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    out = tmp_path / ("a-rather-long-folder-name-" * 4) / "dataset"
    res = cli("make-dataset", "combine", "--source-a", tmp_path / "A", "--source-b", tmp_path / "B", "--split", "train",
              "--out", out, "--workers", "1", "--no-progress")
    assert res.code == 0, res.stderr
    res = cli("datasets", "verify", out)
    assert res.code == 0 and res.stdout == f"{out}: OK, 1 files match manifest.json\n"


def test_a_terminal_still_wraps_and_an_explicit_width_is_kept():
    table = Table("name", "summary")
    table.add_row("x", "word " * 60)
    terminal = {"force_terminal": True, "color_system": None, "_environ": {"COLUMNS": "80"}}
    for kwargs, width in ((terminal, 80), ({"width": 60}, 60)):
        buf = io.StringIO()
        OutputConsole(file=buf, **kwargs).print(table)
        assert max(map(len, buf.getvalue().splitlines())) == width
