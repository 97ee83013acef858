"""Matching results to ground truth: frame names, Cityscapes trees, label/photo folders, manifests."""

from __future__ import annotations

import numpy as np
import pytest

from p2ptools.errors import InputFileError
from p2ptools.eval.matching import (
    CityscapesLabels,
    DatasetPhotos,
    FrameIndex,
    LabelFolder,
    ManifestLabels,
    PhotoFolder,
    find_results,
    frame_name,
)
from p2ptools.imageio import write_image
from p2ptools.labels import CITYSCAPES
from p2ptools.pairs import load_manifest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("frankfurt_000000_000294_leftImg8bit.png", "frankfurt_000000_000294"),
        ("out/munster_000123_000019.png", "munster_000123_000019"),
        ("leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png", "lindau_000001_000019"),
        ("0042.png", None),
        ("frankfurt_00000_000294.png", None),  # 5 digits: not a frame
    ],
)
def test_frame_name(text, expected):
    assert frame_name(text) == expected


def test_find_results_skips_subfolders_and_json(tmp_path, kit):
    folder = tmp_path / "res"
    write_image(folder / "a.png", np.zeros((4, 4, 3), np.uint8))
    write_image(folder / "target" / "a.png", np.zeros((4, 4, 3), np.uint8))
    write_image(folder / "input" / "a.png", np.zeros((4, 4, 3), np.uint8))
    kit.write_translate_json(folder, dataset=str(tmp_path / "data"), direction="BtoA")
    res = find_results(folder)
    assert [p.name for p in res.files] == ["a.png"]
    assert res.targets == folder / "target" and res.inputs == folder / "input"
    assert res.dataset == tmp_path / "data" and res.info["direction"] == "BtoA"
    with pytest.raises(InputFileError, match="no result images"):
        find_results(tmp_path)  # no images at the top level


def test_cityscapes_labels_full_resolution_train_ids(scene):
    src = CityscapesLabels(scene["cs"], CITYSCAPES, FrameIndex())
    name = "frankfurt_000000_000001"
    labels = src.labels(scene["results"] / f"{name}_leftImg8bit.png")
    assert labels.shape == (32, 48) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, scene["gts"][name])


def test_cityscapes_frame_through_manifest_sources(scene, kit, tmp_path):
    name = "frankfurt_000000_000002"
    a = np.zeros((16, 16, 3), np.uint8)
    data = kit.make_aligned_dataset(tmp_path / "data", {"0007": (a, a)}, sources={"0007": [f"leftImg8bit/val/frankfurt/{name}_leftImg8bit.png", f"gtFine/val/frankfurt/{name}_gtFine_labelIds.png"]})
    src = CityscapesLabels(scene["cs"], CITYSCAPES, FrameIndex(load_manifest(data)))
    np.testing.assert_array_equal(src.labels(tmp_path / "res" / "0007.png"), scene["gts"][name])


def test_cityscapes_errors_name_the_result(scene, tmp_path):
    src = CityscapesLabels(scene["cs"], CITYSCAPES, FrameIndex())
    with pytest.raises(InputFileError, match=r"0007\.png: no Cityscapes frame name"):
        src.labels(tmp_path / "0007.png")
    with pytest.raises(InputFileError, match="frame frankfurt_000000_000099 has no"):
        src.labels(tmp_path / "frankfurt_000000_000099.png")
    with pytest.raises(InputFileError, match="no gtFine folder"):
        CityscapesLabels(tmp_path / "nowhere", CITYSCAPES, FrameIndex())


def test_label_folder_train_ids_and_colors(tmp_path):
    ids = np.array([[0, 1, 255], [18, 5, 5]], np.uint8)
    write_image(tmp_path / "lab" / "x.png", ids)
    write_image(tmp_path / "lab" / "y.png", CITYSCAPES.render(ids))
    write_image(tmp_path / "lab" / "bad.png", np.array([[0, 40]], np.uint8))
    src = LabelFolder(tmp_path / "lab", CITYSCAPES)
    np.testing.assert_array_equal(src.labels(tmp_path / "x.png"), ids)
    np.testing.assert_array_equal(src.labels(tmp_path / "y.jpg"), ids)  # color PNG decoded (black -> ignore)
    with pytest.raises(InputFileError, match=r"bad\.png: label values \[40\] are not train ids"):
        src.labels(tmp_path / "bad.png")
    with pytest.raises(InputFileError, match=r"z\.png: no label map named 'z'"):
        src.labels(tmp_path / "z.png")


def test_manifest_labels_and_dataset_photos(tmp_path, kit):
    a = np.full((16, 16, 3), 10, np.uint8)
    b = np.full((16, 16, 3), 200, np.uint8)
    ids = np.full((16, 16), 3, np.uint8)
    data = kit.make_aligned_dataset(tmp_path / "data", {"p1": (a, b)}, labels={"p1": ids})
    np.testing.assert_array_equal(ManifestLabels(data, CITYSCAPES).labels(tmp_path / "p1.png"), ids)
    assert DatasetPhotos(data, "test", "AtoB").photo(tmp_path / "p1.png")[0, 0, 0] == 200
    assert DatasetPhotos(data, "test", "BtoA").photo(tmp_path / "p1.png")[0, 0, 0] == 10
    assert DatasetPhotos(data, "test", "BtoA").input(tmp_path / "p1.png")[0, 0, 0] == 200
    with pytest.raises(InputFileError, match="no pair named 'p2'"):
        ManifestLabels(data, CITYSCAPES).labels(tmp_path / "p2.png")
    with pytest.raises(InputFileError, match="no 'val' split"):
        DatasetPhotos(data, "val")


def test_photo_folder_by_stem_or_frame(scene, tmp_path):
    photos = PhotoFolder(scene["real"])
    name = "frankfurt_000000_000000"
    np.testing.assert_array_equal(photos.photo(tmp_path / f"{name}.png"), scene["photos"][name])  # by frame name
    np.testing.assert_array_equal(photos.photo(tmp_path / f"{name}_leftImg8bit.jpg"), scene["photos"][name])  # by stem
    with pytest.raises(InputFileError, match="no ground-truth photo named 'other'"):
        photos.photo(tmp_path / "other.png")
