"""What ``translate --input`` reads: which split of a dataset root, and whether the images are A|B
pairs (issue 26 items 1 and 8). Headers only: no model is needed to decide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import write_image
from p2ptools.pairs import evaluation_split
from p2ptools.translate import resolve_inputs


def _images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """PNG files of the given (width, height) in ``folder``, named 0.png, 1.png, ..."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        paths.append(folder / f"{i}.png")
        write_image(paths[-1], rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return paths


def _reference_layout(root: Path) -> Path:
    """What the reference's combine_A_and_B.py writes: train/val/test of 128x64 A|B pairs, no manifest."""
    for split in ("train", "val", "test"):
        _images(root / split, [(128, 64)] * 2)
    return root


def test_a_reference_split_folder_is_read_as_pairs(tmp_path):
    root = _reference_layout(tmp_path / "data")
    inputs = resolve_inputs(root / "val")
    assert inputs.aligned and inputs.dataset_root == root and inputs.split == "val"
    assert [p.name for p in inputs.files] == ["0.png", "1.png"]
    whole = resolve_inputs(root)  # the root: its test split
    assert whole.aligned and whole.split == "test" and whole.files[0].parent == root / "test"
    one = resolve_inputs(root / "val" / "1.png")  # one file of a split folder
    assert one.aligned and one.split == "val"


def test_a_folder_of_two_to_one_images_is_read_as_pairs_and_square_images_as_plain(tmp_path):
    _images(tmp_path / "pairs", [(64, 32), (128, 64), (64, 32)])
    assert resolve_inputs(tmp_path / "pairs").aligned is True
    _images(tmp_path / "photos", [(64, 64), (80, 60)])
    assert resolve_inputs(tmp_path / "photos").aligned is False
    # what the user says wins over detection
    assert resolve_inputs(tmp_path / "pairs", aligned=False).aligned is False
    assert resolve_inputs(tmp_path / "photos", aligned=True).aligned is True


@pytest.mark.parametrize(
    ("layout", "why"),
    [
        ("mixed", "1 of its 2 images are twice as wide as high, the others not"),
        ("single", "one image twice as wide as high, outside a dataset"),
    ],
)
def test_unsure_detection_asks_for_aligned_or_plain(tmp_path, layout, why):
    if layout == "mixed":
        target = tmp_path / "mixed"
        _images(target, [(64, 32), (64, 64)])
    else:
        target = _images(tmp_path / "one", [(64, 32)])[0]
    with pytest.raises(ConfigError) as info:
        resolve_inputs(target)
    message = str(info.value)
    assert why in message and "--aligned" in message and "--plain" in message and "\n" not in message
    assert resolve_inputs(target, aligned=True).aligned and not resolve_inputs(target, aligned=False).aligned


def test_a_dataset_split_is_pairs_whatever_the_shape(tmp_path):
    _images(tmp_path / "hd" / "val", [(128, 32)])  # --aspect keep: halves of 64x32
    (tmp_path / "hd" / "manifest.json").write_text("{}")
    inputs = resolve_inputs(tmp_path / "hd")
    assert inputs.aligned and inputs.split == "val"
    _images(tmp_path / "ref" / "train", [(128, 32)])  # no manifest: split folders beside each other
    _images(tmp_path / "ref" / "val", [(128, 32), (128, 32)])
    assert resolve_inputs(tmp_path / "ref" / "val").aligned


def test_the_default_split_is_test_else_val(tmp_path):
    root = tmp_path / "cityscapes"  # the Cityscapes builder writes train and val only
    _images(root / "train", [(64, 32)])
    _images(root / "val", [(64, 32)])
    (root / "manifest.json").write_text("{}")
    assert evaluation_split(root) == "val"
    assert resolve_inputs(root).split == "val"
    _images(root / "test", [(64, 32)])
    assert evaluation_split(root) == "test" and resolve_inputs(root).split == "test"
    assert resolve_inputs(root, split="train").split == "train"
    with pytest.raises(InputFileError, match=r"dataset has no 'nope' split \(it has: train, val, test; choose one with --split\)"):
        resolve_inputs(root, split="nope")
    empty = tmp_path / "only-train"
    _images(empty / "train", [(64, 32)])
    with pytest.raises(InputFileError, match="no test or val split to evaluate on"):
        evaluation_split(empty)
