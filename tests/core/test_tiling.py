"""Issue 28: tiled translation (p2ptools.tiling): exact reassembly, the blending window, tiles of
one size in batches of at most --batch-size (the memory bound), where tiles agree with the whole
image and where they cannot, and translate --tile end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from p2ptools.errors import ConfigError
from p2ptools.imageio import read_image, write_image
from p2ptools.tiling import Tiling, coverage, seam_error, size_hint, tile_starts, tiles, translate_tiled, window


def _image(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(100, 70, 3), (64, 64, 3), (20, 150, 0), (257, 33, 1)])
def test_identity_model_reassembles_the_image_exactly(shape):
    image = _image(*shape)
    image = image[:, :, 0] if shape[2] == 1 else image
    out = translate_tiled(image, lambda t, e: [x.copy() for x in t], Tiling(64, 24, 16), batch_size=3)
    assert out.shape == image.shape and np.array_equal(out, image)


def test_tiles_start_on_the_size_multiple_and_cover_the_image():
    t = Tiling(64, 20, 16)
    assert t.step == 32  # 64 - 20 = 44, rounded down to the multiple 16
    assert tile_starts(160, t) == [0, 32, 64, 96]
    assert all(top % 16 == 0 and left % 16 == 0 for top, left, _ in tiles(150, 100, t))
    cover = coverage(150, 100, t)
    assert cover.min() >= 1 and cover.shape == (150, 100)


def test_window_is_positive_smooth_and_one_inside():
    w = window(64, 16, 8)
    assert (w > 0).all() and (w <= 1).all()
    assert np.all(w[16:56] == 1) and np.all(np.diff(w[:16]) > 0) and np.all(np.diff(w[56:]) < 0)
    # two tiles' ramps over one overlap add to one (sin^2 + cos^2), so a seam is a cross-fade
    ramp = window(32, 16, 0)[:16]
    assert np.allclose(ramp + ramp[::-1], 1.0)


def test_tiles_go_in_batches_of_one_size():
    seen = []

    def spy(batch, maps):
        seen.append([b.shape for b in batch])
        return [b.copy() for b in batch]
    translate_tiled(_image(300, 200), spy, Tiling(64, 16, 32), batch_size=4)
    assert all(len(b) <= 4 for b in seen) and {s for b in seen for s in b} == {(64, 64, 3)}
    assert sum(map(len, seen)) == len(list(tiles(300, 200, Tiling(64, 16, 32))))


def _blur(batch, maps):  # a local operator: each output pixel depends on its 5x5 neighbourhood
    return [cv2.blur(b, (5, 5), borderType=cv2.BORDER_REFLECT) for b in batch]


def _per_tile_norm(batch, maps):  # normalises each tile by its own statistics (like instance norm)
    return [np.clip((b.astype(np.float32) - b.mean() + 128), 0, 255).astype(np.uint8) for b in batch]


def test_local_operators_are_tile_invariant_in_interiors_but_per_tile_statistics_are_not():
    image = cv2.GaussianBlur(_image(192, 160), (0, 0), 6)
    image[:96] //= 2  # a darker top half: tiles have different means
    tiling = Tiling(64, 16, 16)
    cover = coverage(192, 160, tiling)
    local = seam_error(translate_tiled(image, _blur, tiling), _blur([image], [{}])[0], cover)
    assert local["interior_max"] == 0  # no tile edge within 2 px of an interior pixel
    assert local["seam_max"] <= 1  # the window gives the tiles' wrong edge pixels almost no weight
    abutting = Tiling(64, 0, 16)  # no overlap: the tiles' reflected borders show along the seams
    cut = translate_tiled(image, _blur, abutting)
    assert np.abs(cut.astype(int) - _blur([image], [{}])[0]).max() > 0
    stats = seam_error(translate_tiled(image, _per_tile_norm, tiling), _per_tile_norm([image], [{}])[0], cover)
    assert stats["interior_max"] > 5


def test_extras_are_cut_with_their_tiles():
    labels = (np.arange(96 * 96).reshape(96, 96) % 251).astype(np.uint8)
    out = translate_tiled(np.zeros((96, 96, 3), np.uint8), lambda t, e: [m["label_ids"] for m in e], Tiling(64, 32, 32),
                          extras={"label_ids": labels})
    assert np.array_equal(out, labels)


def test_bad_tilings_and_the_size_hint():
    with pytest.raises(ConfigError, match="--tile 48: must be a positive multiple of the network's size multiple 32"):
        Tiling(48, 8, 32)
    with pytest.raises(ConfigError, match="--overlap 64: must be at least 0 and below --tile 64"):
        Tiling(64, 64, 32)
    assert size_hint(2048, 2048) is None
    assert "--tile 512" in size_hint(3000, 4000) and "4000x3000" in size_hint(3000, 4000)


def test_translate_tile_end_to_end(tmp_path, cli, monkeypatch):
    import sys
    from pathlib import Path

    import p2ptools.tiling

    sys.path.insert(0, str(Path(__file__).parents[1] / "pix2pix"))
    from test_reference_import import _imported_run  # an imported unet_64 run (size multiple 64)

    run = _imported_run(tmp_path, cli)
    write_image(tmp_path / "in" / "big.png", _image(96, 160))
    res = cli("translate", run, "--input", tmp_path / "in", "--output", tmp_path / "out", "--no-progress", "--eval-mode",
              "--tile", "128", "--overlap", "64")
    assert res.code == 0, res.stderr
    assert read_image(tmp_path / "out" / "big.png").shape == (96, 160, 3)
    assert json.loads((tmp_path / "out" / "translate.json").read_text())["fit"] == {"mode": "tile", "tile": 128, "overlap": 64}
    # whole-image translation of an image above the budget: one hint line, the translation still made
    monkeypatch.setattr(p2ptools.tiling, "HINT_PIXELS", 64 * 64)
    write_image(tmp_path / "in2" / "big.png", _image(128, 192))
    res = cli("translate", run, "--input", tmp_path / "in2", "--output", tmp_path / "o1", "--no-progress")
    assert res.code == 0 and [line for line in res.stderr.splitlines() if line.startswith("hint:")] == [
        f"hint: {tmp_path / 'in2' / 'big.png'}: {size_hint(128, 192)}"]
    res = cli("translate", run, "--input", tmp_path / "in", "--output", tmp_path / "o2", "--tile", "64", "--resize", "64")
    assert res.code == 1 and "choose one of --resize N, --pad and --tile T" in res.stderr and not (tmp_path / "o2").exists()
