"""Issue 23, group 1, pix2pixHD: ``train --overwrite`` checks every label and instance map (type,
size, ids below --label-nc) before the old run is set aside, so bad new data never costs the old run."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import make_label_dataset  # noqa: E402
from p2p_testutils import assert_one_line_error, tree_bytes  # noqa: E402

TRAIN = ["--model", "pix2pixhd", "--ngf", "4", "--ndf", "4", "--n-downsample-global", "2", "--n-blocks-global", "1",
         "--n-layers-D", "2", "--label-nc", "5", "--direction", "BtoA", "--no-vgg-loss", "--preprocess", "none",
         "--epochs", "1", "--epochs-decay", "0", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress"]


@pytest.fixture
def run(tmp_path, cli) -> tuple[Path, Path]:
    data = make_label_dataset(tmp_path / "data", train=2, val=2)
    out = tmp_path / "run"
    res = cli("train", "--data", data, "--out", out, *TRAIN)
    assert res.code == 0, res.stderr
    return data, out


@pytest.mark.parametrize("damage", ["label id", "size", "channels", "instance size"])
def test_overwrite_with_a_bad_map_keeps_the_old_run(run, cli, damage):
    data, out = run
    before = tree_bytes(out)
    kind = "instance_ids" if damage == "instance size" else "label_ids"
    bad = data / kind / "val" / "001.png"  # validation reads it at the epoch's end, after the first checkpoint
    ids = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    if damage == "label id":
        ids[0, 0] = 7  # --label-nc 5
        needle = "label id 7 does not fit --label-nc 5"
    elif damage == "channels":
        ids = np.stack([ids] * 3, axis=2)
        needle = "single-channel"
    else:
        ids = ids[:, :-2]
        needle = "differs from its pair's halves"
    assert cv2.imwrite(str(bad), ids)
    res = cli("train", "--data", data, "--out", out, *TRAIN, "--lr", "0.0001", "--overwrite")
    assert_one_line_error(res, str(bad), needle)
    assert "back in place" not in res.stderr  # refused before the old run was set aside, not restored after
    assert tree_bytes(out) == before
