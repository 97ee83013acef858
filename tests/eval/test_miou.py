"""The mIoU protocol (p2ptools.eval.miou): size and label-resize choices against independent
computations, the split coverage check, the report block, and the streaming pass with a fake scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.evaluate import EvalOptions, evaluate_results
from p2ptools.eval.matching import find_results
from p2ptools.eval.miou import MiouOptions, miou_block, parse_miou_size, resize_labels
from p2ptools.labels import CITYSCAPES


def test_sizes():
    assert parse_miou_size("native") is None
    assert parse_miou_size("1024x2048") == (1024, 2048)  # Cityscapes' full resolution, 2048 wide
    assert parse_miou_size("512x256") == (256, 512)  # WxH
    for bad in ("big", "0x4", "4x", "1024*2048"):
        with pytest.raises(ConfigError, match="--miou-size"):
            parse_miou_size(bad)
    with pytest.raises(ConfigError, match="--label-resize"):
        MiouOptions(weights=Path("w"), label_resize="bicubic").check()
    with pytest.raises(ConfigError, match="--miou-weights"):
        MiouOptions().check()


def test_nearest_label_resize_samples_pixel_centres():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (12, 20)).astype(np.uint8)
    out = resize_labels(labels, (5, 7), "nearest", 19)
    rows = np.floor((np.arange(5) + 0.5) * 12 / 5).astype(int)
    cols = np.floor((np.arange(7) + 0.5) * 20 / 7).astype(int)
    np.testing.assert_array_equal(out, labels[rows][:, cols])
    assert resize_labels(labels, (12, 20), "bilinear-argmax", 19) is labels


def test_bilinear_argmax_takes_the_soft_majority():
    # 4x4 blocks of one class each -> shrunk 4x: every output pixel is its block's class
    blocks = np.arange(6, dtype=np.uint8).reshape(2, 3)
    labels = np.kron(blocks, np.ones((4, 4), np.uint8))
    np.testing.assert_array_equal(resize_labels(labels, (2, 3), "bilinear-argmax", 19), blocks)
    # a 2x2 block: 3 pixels of class 7 and one of 2 -> 7 (nearest would take the top-left pixel, 2)
    one = np.array([[2, 7], [7, 7]], np.uint8)
    assert resize_labels(one, (1, 1), "bilinear-argmax", 19)[0, 0] == 7
    assert resize_labels(one, (1, 1), "nearest", 19)[0, 0] == 7  # PIL nearest samples the centre (1, 1)
    # mostly ignore stays ignore; a tie between a class and ignore goes to the class
    assert resize_labels(np.array([[255, 255], [255, 3]], np.uint8), (1, 1), "bilinear-argmax", 19)[0, 0] == 255
    assert resize_labels(np.array([[255, 255], [3, 3]], np.uint8), (1, 1), "bilinear-argmax", 19)[0, 0] == 3
    # upsampling keeps the classes where they were
    up = resize_labels(blocks, (8, 12), "bilinear-argmax", 19)
    np.testing.assert_array_equal(up[1::4, 1::4], blocks)


@pytest.fixture
def scorer(fake_scorer):
    """The evaluator tests' fake scorer (nearest resize, colours decoded) with the contract's info()."""
    fake_scorer.info = lambda: {"scorer": "fake", "scales": [1.0]}
    return fake_scorer


def _protocol(**changes):
    return {"scorer": "x", "weights": "/w/x.pth", "size": "native", "label_resize": "nearest", "split": "val", "multi_scale": False,
            "segmented_at": "each image's own size", "label_maps": 2, "images": 2, "scorer_info": {}, "classes": CITYSCAPES.to_dict(), **changes}


def test_block_means_over_the_classes_present():
    hist = np.zeros((19, 20), np.int64)
    hist[0, 0], hist[0, 1], hist[1, 1], hist[2, 0] = 6, 2, 3, 1  # classes 3..18 never occur
    block = miou_block(hist, _protocol(), 2)
    iou0, iou1, iou2 = 6 / (8 + 7 - 6), 3 / (3 + 5 - 3), 0 / (1 + 0 - 0)
    assert block["per_class_iou"]["road"] == pytest.approx(iou0) and block["per_class_iou"]["building"] == 0.0
    assert block["per_class_iou"]["wall"] is None and block["classes_in_mean"] == 3
    assert block["miou"] == pytest.approx((iou0 + iou1 + iou2) / 3)
    assert block["accuracy"] == pytest.approx(9 / 12) and block["pixels"] == 12 and block["n_images"] == 2
    assert "nanmean" in block["protocol_text"] and "Cityscapes val (2 label maps)" in block["protocol_text"]


def _expected_miou(pairs):
    """Independent: per-class IoU with Python sets of pixel positions, mean over classes present."""
    ious, right, total = [], 0, 0
    for c in range(19):
        inter = union = 0
        for gt, pred in pairs:
            valid = gt != 255
            g, p = (gt == c) & valid, (pred == c) & valid
            inter += int((g & p).sum())
            union += int((g | p).sum())
        if union:
            ious.append(inter / union)
    for gt, pred in pairs:
        valid = gt != 255
        right += int(((gt == pred) & valid).sum())
        total += int(valid.sum())
    return float(np.mean(ious)), right / total


def test_streaming_pass_and_upsampling(scene, scorer):
    results = find_results(scene["results"])
    gts, preds = scene["gts"], scene["preds"]
    options = EvalOptions(cityscapes=scene["cs"], miou=MiouOptions(scorer="fake", weights=Path("w"), size="native"), progress=False)
    ev = evaluate_results(results, options, miou_scorer=scorer)
    miou, acc = _expected_miou([(gts[n], preds[n]) for n in gts])
    block = ev.report["miou"]
    assert block["miou"] == pytest.approx(miou) and block["accuracy"] == pytest.approx(acc)
    assert block["protocol"]["segmented_at"] == "each image's own size" and block["protocol"]["label_maps"] == 3
    assert scorer.calls == [(3, (32, 48))]
    # 96x64 (WxH): the fake scorer's nearest upsampling and the labels' both repeat each pixel 2x2
    scorer.calls.clear()
    options = EvalOptions(cityscapes=scene["cs"], miou=MiouOptions(scorer="fake", weights=Path("w"), size="96x64"), progress=False)
    block = evaluate_results(results, options, miou_scorer=scorer).report["miou"]
    assert scorer.calls == [(3, (64, 96))]
    assert block["miou"] == pytest.approx(miou) and block["pixels"] == 4 * ev.report["miou"]["pixels"]
    assert block["protocol"]["segmented_at"] == {"width": 96, "height": 64}


def test_the_results_must_cover_the_split(scene, scorer, kit):
    options = EvalOptions(cityscapes=scene["cs"], miou=MiouOptions(scorer="fake", weights=Path("w")), progress=False)
    rng = np.random.default_rng(1)
    kit.make_cityscapes(scene["cs"], {kit.frame(7): kit.random_train_ids(rng, (32, 48))})  # a 4th val label map
    with pytest.raises(InputFileError, match=r"3 result images for the 4 label maps of Cityscapes val"):
        evaluate_results(find_results(scene["results"]), options, miou_scorer=scorer)
    assert scorer.calls == []  # refused before any image was segmented
    Image.open(next(scene["results"].iterdir())).save(scene["results"] / f"{kit.frame(0)}_copy_leftImg8bit.png")  # two results, one frame
    with pytest.raises(InputFileError, match="has the same ground truth as"):
        evaluate_results(find_results(scene["results"]), options, miou_scorer=scorer)


def test_labels_only_from_the_chosen_split(scene, scorer):
    options = EvalOptions(cityscapes=scene["cs"], miou=MiouOptions(scorer="fake", weights=Path("w"), split="train"), progress=False)
    with pytest.raises(InputFileError, match=r"gtFine_labelIds.png under .*\{train\}"):
        evaluate_results(find_results(scene["results"]), options, miou_scorer=scorer)
