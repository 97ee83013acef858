"""Progress on output that is not a terminal: plain lines (status changes, every N seconds, the end) instead of a rich bar, through the one helper every long job uses."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
from rich.console import Console
from rich.progress import Progress

from p2ptools import progress as progress_mod
from p2ptools.progress import EVERY_ENV, LineProgress, make_progress


def _lines(every: float, steps: int = 10, status_every: int = 5) -> list[str]:
    buf = io.StringIO()
    with LineProgress(Console(file=buf, width=40), every=every) as bar:
        task = bar.add_task("job", total=steps, stats="")
        for step in range(1, steps + 1):
            if step % status_every == 0:
                bar.update(task, completed=step, stats=f"loss {step / 10:.1f}")
            else:
                bar.update(task, completed=step)
    return buf.getvalue().splitlines()


def test_lines_on_status_changes_and_at_the_end():
    lines = _lines(every=3600)
    assert [line.split(" |")[0] for line in lines] == ["job: 5/10 (50%) loss 0.5", "job: 10/10 (100%) loss 1.0"]
    assert re.search(r"\| [\d.]+/s, 0:00:00 elapsed, ETA 0:00:\d\d$", lines[0])
    assert lines[-1].endswith(", done")


def test_every_n_seconds_in_between():
    lines = _lines(every=0)  # every update is due
    assert len(lines) == 10 and lines[2].startswith("job: 3/10 (30%) |")


def test_no_wrapping_of_long_lines():
    buf = io.StringIO()
    with LineProgress(Console(file=buf, width=40), every=0) as bar:
        task = bar.add_task("/a/very/long/path/" * 8, total=2)
        bar.advance(task)
    assert len(buf.getvalue().splitlines()) == 1  # however long


def test_make_progress_picks_plain_lines_off_a_terminal(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "5")
    buf = io.StringIO()
    monkeypatch.setattr(progress_mod, "console", Console(file=buf))
    plain = make_progress(True)
    assert isinstance(plain, LineProgress) and plain.every == 5.0
    off = make_progress(False)
    assert isinstance(off, Progress) and off.disable
    with off:
        off.advance(off.add_task("x", total=3))
    assert buf.getvalue() == ""
    monkeypatch.setattr(progress_mod, "console", Console(file=buf, force_terminal=True))
    assert isinstance(make_progress(True), Progress)


def test_make_dataset_prints_plain_lines(cli, tmp_path):
    rng = np.random.default_rng(0)
    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / side / f"{i}.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    res = cli("make-dataset", "combine", "--source-a", tmp_path / "A", "--source-b", tmp_path / "B", "--out", tmp_path / "out",
              "--split", "train", "--workers", "1")
    assert res.code == 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("combine: 3/3 (100%) |") and lines[0].endswith("done")


def test_a_new_description_alone_prints_nothing():
    buf = io.StringIO()
    with LineProgress(Console(file=buf), every=3600) as bar:
        task = bar.add_task("fcn train", total=3)
        for step in range(2):
            bar.update(task, advance=1, description=f"fcn train loss {step}")
        assert buf.getvalue() == ""
        bar.advance(task)
    assert buf.getvalue().startswith("fcn train loss 1: 3/3 (100%) |")


def _terminal_frame(width: int, stats: str) -> str:
    """The last frame the rich bar of a training job draws on a terminal ``width`` columns wide."""
    from p2ptools.progress import StatsColumn

    buf = io.StringIO()
    terminal = Console(file=buf, width=width, force_terminal=True, color_system=None)
    progress_mod_console = progress_mod.console
    progress_mod.console = terminal
    try:
        bar = make_progress(True, StatsColumn())
    finally:
        progress_mod.console = progress_mod_console
    with bar:
        task = bar.add_task("train pix2pix", total=1200, stats="")
        bar.update(task, completed=240, stats=stats)
    frames = [f for f in re.split(r"\r|\x1b\[2K|\x1b\[\?25[hl]|\x1b\[1A", buf.getvalue()) if f.strip()]
    return frames[-1].rstrip("\n")


STATS = "epoch 1/5 G_GAN 0.693 G_L1_weighted 41.7 D_real 0.512 D_fake 0.488 images/s 9.8 val_L1 0.415"


def test_an_80_column_bar_keeps_bar_count_percent_and_labelled_times():
    frame = _terminal_frame(80, STATS)
    assert "\n" not in frame and len(frame) <= 80, frame  # one row: nothing wrapped
    assert re.match(r"train pix2pix ━+ +240/1200 +20% 0:00:\d\d elapsed ETA (-:--:--|\d:\d\d:\d\d)", frame), frame
    assert "G_GAN" not in frame  # the losses gave way, not the bar


def test_a_wider_bar_shows_whole_status_items_only():
    frame = _terminal_frame(120, STATS)
    assert "\n" not in frame and len(frame) <= 120, frame
    assert "━" in frame and "240/1200" in frame and "20%" in frame and " elapsed ETA " in frame
    status = frame.split(" ETA ")[1].split(" ", 1)[1].strip()
    assert status.startswith("epoch 1/5 G_GAN 0.693")
    assert STATS.startswith(status) and STATS[len(status)] == " " and status.split()[-1][0].isdigit()  # no half item
