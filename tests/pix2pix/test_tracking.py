"""--log tensorboard: every curve and the sample grids, read back with TensorBoard's own event
reader; a run resumed after a crash continues its curves with each step once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_options, train_until_crash  # noqa: E402
from p2ptools_pix2pix import trainer  # noqa: E402

from p2ptools.errors import ConfigError  # noqa: E402
from p2ptools.training.tracking import parse_trackers, scalar_tag  # noqa: E402

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(run: Path):
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_parse_trackers():
    assert parse_trackers("tensorboard") == ("jsonl", "tensorboard")
    assert parse_trackers(" jsonl,tensorboard") == ("jsonl", "tensorboard")
    assert parse_trackers("") == ("jsonl",)
    with pytest.raises(ConfigError, match="--log: unknown tracker.*mlflow"):
        parse_trackers("jsonl,mlflow")
    assert (scalar_tag("val_L1"), scalar_tag("G_GAN")) == ("val/L1", "train/G_GAN")


def test_tensorboard_holds_every_curve_and_the_samples(tiny_data, tmp_path):
    run = trainer.train(tiny_options(log="tensorboard", epochs=1, epochs_decay=1), tiny_data, tmp_path / "run", progress=False)
    acc = read_events(run)
    tags = set(acc.Tags()["scalars"])
    assert {"train/G_GAN", "train/G_L1_weighted", "train/D_real", "train/D_fake", "train/lr", "train/images_per_s", "val/L1"} <= tags
    log = read_log(run)
    train_records, val_records = [r for r in log if "G_L1_weighted" in r], [r for r in log if "val_L1" in r]
    assert [e.step for e in acc.Scalars("train/G_L1_weighted")] == [r["step"] for r in train_records] == list(range(1, 9))
    assert [e.value for e in acc.Scalars("train/G_L1_weighted")] == pytest.approx([r["G_L1_weighted"] for r in train_records], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/L1")] == [4, 8]
    assert [e.value for e in acc.Scalars("val/L1")] == pytest.approx([r["val_L1"] for r in val_records], rel=1e-6)
    images = acc.Images("samples")
    assert [i.step for i in images] == [4, 8] and (images[0].height, images[0].width) == _grid_shape(rows=4, tile=32)


def test_a_resumed_run_continues_its_curves_without_duplicate_steps(monkeypatch, tiny_data, tmp_path):
    options = tiny_options(log="tensorboard", checkpoint_every=3, epochs=2, epochs_decay=1)
    run = tmp_path / "run"
    train_until_crash(monkeypatch, options, tiny_data, run, crash_at=8)  # no checkpoint after step 6
    assert [e.step for e in read_events(run).Scalars("train/G_L1_weighted")] == list(range(1, 8))  # step 7 after the checkpoint
    trainer.train(options, tiny_data, run, resume=True, progress=False)
    acc = read_events(run)
    steps = [e.step for e in acc.Scalars("train/G_L1_weighted")]
    assert steps == list(range(1, 13))  # the crashed run's step 7 is purged, redone once
    assert [e.step for e in acc.Scalars("val/L1")] == [4, 8, 12]
    # the curves agree with log.jsonl, which holds each step once too
    assert [e.value for e in acc.Scalars("train/G_L1_weighted")] == pytest.approx([r["G_L1_weighted"] for r in read_log(run) if "G_L1_weighted" in r], rel=1e-6)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one file per process, as TensorBoard expects


def _grid_shape(rows: int, tile: int) -> tuple[int, int]:
    """(height, width) of a sample grid of ``rows`` input | output | target rows of ``tile`` pixels."""
    import numpy as np

    from p2ptools.training.samples import sample_grid

    blank = [np.zeros((tile, tile, 3), np.uint8)] * rows
    return sample_grid(blank, blank, blank).shape[:2]
