"""pix2pixHD inputs: one-hot labels, instance boundaries (against loops over pixels), packed samples
with the same jitter for photos and maps, and errors naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import PHOTO_COLORS, make_label_dataset  # noqa: E402
from p2ptools_pix2pixhd.data import HDJitter, HDPairs, encode_input, input_channels, instance_edges, one_hot  # noqa: E402

from p2ptools.errors import InputFileError  # noqa: E402
from p2ptools.training.data import check_batch, collate_pairs  # noqa: E402


def test_one_hot_and_its_range_check():
    ids = torch.tensor([[[[0, 2], [1, 2]]]])
    out = one_hot(ids, 3)
    assert out.shape == (1, 3, 2, 2)
    for y in range(2):
        for x in range(2):
            assert out[0, :, y, x].tolist() == [1.0 if c == ids[0, 0, y, x] else 0.0 for c in range(3)]
    with pytest.raises(ValueError, match="label ids 0..2 do not fit --label-nc 2"):
        one_hot(ids, 2)


def test_instance_edges_against_a_pixel_loop():
    rng = np.random.default_rng(0)
    inst = rng.integers(0, 3, (2, 1, 5, 7))
    got = instance_edges(torch.from_numpy(inst)).numpy()
    want = np.zeros_like(got)
    for n in range(2):
        for y in range(5):
            for x in range(7):
                for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < 5 and 0 <= xx < 7 and inst[n, 0, yy, xx] != inst[n, 0, y, x]:
                        want[n, 0, y, x] = 1
    np.testing.assert_array_equal(got, want)
    assert instance_edges(torch.full((1, 1, 3, 3), 7)).sum() == 0


def test_packed_samples_encode_to_labels_plus_edges(tmp_path):
    root = make_label_dataset(tmp_path / "d", train=2, val=0)
    files = sorted((root / "train").iterdir())
    data = HDPairs(files, HDJitter("none", train=False), label_nc=5, instance=True, direction="BtoA")
    item = data[0]
    assert item["A"].shape == (2, 32, 64) and item["A"].dtype == torch.int32 and item["B"].shape == (3, 32, 64)
    x = encode_input(collate_pairs([data[0], data[1]])["A"], 5, True)
    assert x.shape == (2, input_channels(5, 3, True), 32, 64) == (2, 6, 32, 64)
    assert torch.equal(x[:, :5].sum(1), torch.ones(2, 32, 64))
    labels = item["A"][0].numpy()
    # the target is the photo half (A of the pair, BtoA): the color of each pixel's label
    np.testing.assert_array_equal(item["B"].permute(1, 2, 0).numpy(), PHOTO_COLORS[labels])


def test_jitter_moves_maps_and_photo_together(tmp_path):
    root = make_label_dataset(tmp_path / "d", train=1, val=0)
    files = sorted((root / "train").iterdir())
    jitter = HDJitter("scale_width_and_crop", load_size=32, crop_size=16, flip=True, train=True)
    data = HDPairs(files, jitter, label_nc=5, instance=False, direction="BtoA", seed=3)
    for epoch in range(4):
        item = data[(epoch, 0)]
        assert item["A"].shape == (1, 16, 16)
        labels = item["A"][0].numpy()
        photo = item["B"].permute(1, 2, 0).numpy()
        # the label map stays aligned with the photo: away from blended edges (the default resize is
        # PIL's antialiased bicubic), each pixel is near its label's color
        near = (np.abs(photo.astype(int) - PHOTO_COLORS[labels].astype(int)).max(axis=2) <= 12)
        assert near.mean() > 0.6, near.mean()
    assert torch.equal(data[(1, 0)]["A"], data[(1, 0)]["A"])  # seeded by (seed, epoch, index)


def test_rgb_input_mode_packs_the_image(tmp_path):
    root = make_label_dataset(tmp_path / "d", train=1, val=0)
    data = HDPairs(sorted((root / "train").iterdir()), HDJitter("none", train=False), label_nc=0, instance=False)
    item = data[0]
    assert item["A"].dtype == torch.uint8 and item["A"].shape == (3, 32, 64)
    x = encode_input(item["A"][None], 0, False)
    assert x.min() >= -1 and x.max() <= 1


def test_bad_maps_are_errors_naming_the_file(tmp_path):
    root = make_label_dataset(tmp_path / "d", train=1, val=0)
    files = sorted((root / "train").iterdir())
    data = HDPairs(files, HDJitter("none", train=False), label_nc=3, instance=True, direction="BtoA")
    with pytest.raises(InputFileError, match=r"label_ids/train/000.png: label id \d does not fit --label-nc 3"):
        check_batch(collate_pairs([data[0]]))
    (root / "instance_ids" / "train" / "000.png").unlink()
    data = HDPairs(files, HDJitter("none", train=False), label_nc=5, instance=True, direction="BtoA")
    with pytest.raises(InputFileError, match="instance_ids/train/000.png"):
        check_batch(collate_pairs([data[0]]))


def test_sample_grids_draw_label_ids_in_the_cityscapes_colours():
    """The grid's input column shows a label map as the dataset's own label pictures do: each
    Cityscapes label id in its class colour (road 7, car 26, sky 23), void ids black."""
    from p2ptools_pix2pixhd.data import input_preview

    from p2ptools.labels import CITYSCAPES

    ids = torch.tensor([[7, 26], [23, 0]], dtype=torch.int32)[None]  # (1, H, W): label ids, no instance map
    picture = input_preview(ids, 35, instance=False)
    colour = dict(zip(CITYSCAPES.names, CITYSCAPES.colors, strict=True))
    assert picture[0, 0].tolist() == list(colour["road"]) == [128, 64, 128]
    assert picture[0, 1].tolist() == list(colour["car"]) and picture[1, 0].tolist() == list(colour["sky"])
    assert picture[1, 1].tolist() == [0, 0, 0]
