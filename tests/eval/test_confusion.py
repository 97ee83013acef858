"""Confusion matrix and scores: a hand-computed case, an independent loop, streaming memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from p2ptools.eval.confusion import accumulate, new_hist, scores

# gt (255 = ignore) and predictions with C = 5 classes; 19 and 7 are "no class" predictions
GT = np.array([[0, 0, 1, 1], [2, 255, 1, 0]], np.uint8)
PRED = np.array([[0, 1, 1, 19], [2, 0, 7, 0]], np.uint8)
# by hand: gt0 -> pred 0,1,0; gt1 -> pred 1, no class, no class; gt2 -> pred 2; ignore dropped
HAND = np.array(
    [
        [2, 1, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 2],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
)


def test_hand_computed_matrix_and_scores():
    hist = accumulate(new_hist(5), GT, PRED, 5)
    np.testing.assert_array_equal(hist, HAND)
    s = scores(hist, ["a", "b", "c", "d", "e"])
    # total 7 valid pixels, 4 correct
    assert s["per_pixel_acc"] == pytest.approx(4 / 7)
    # rows 3, 3, 1, 0, 0: acc 2/3, 1/3, 1, 0 (empty), 0 (empty) -> absent classes stay in the mean
    assert s["per_class_acc"] == pytest.approx((2 / 3 + 1 / 3 + 1) / 5)
    # cols (classes only) 2, 2, 1, 0, 0: IoU 2/3, 1/(3+2-1), 1/(1+1-1), 0, 0
    assert s["class_iou"] == pytest.approx((2 / 3 + 1 / 4 + 1) / 5)
    assert s["per_class"]["b"] == pytest.approx({"acc": 1 / 3, "iou": 1 / 4})
    assert s["per_class"]["e"] == {"acc": 0.0, "iou": 0.0}
    assert s["pixels"] == 7


def test_false_positive_of_a_class_absent_from_ground_truth():
    gt = np.array([[0, 0]], np.uint8)
    pred = np.array([[0, 1]], np.uint8)
    s = scores(accumulate(new_hist(2), gt, pred, 2))
    assert s["per_class"]["class_1"] == {"acc": 0.0, "iou": 0.0}  # row empty, column 1 -> IoU 0/1
    assert s["per_class"]["class_0"]["iou"] == pytest.approx(1 / 2)


def test_no_class_predictions_are_no_false_positive():
    gt = np.array([[0, 1]], np.uint8)
    pred = np.array([[19, 1]], np.uint8)
    s = scores(accumulate(new_hist(2), gt, pred, 2))
    assert s["per_class"]["class_1"]["iou"] == 1.0  # the 20th-channel pixel is nobody's false positive
    assert s["per_class"]["class_0"]["acc"] == 0.0
    assert s["per_pixel_acc"] == 0.5


def test_matches_independent_loop_over_frames(kit):
    rng = np.random.default_rng(1)
    pairs = [(kit.random_train_ids(rng, (17, 23)), rng.integers(0, 21, (17, 23)).astype(np.uint8)) for _ in range(4)]
    hist = new_hist(19)
    for gt, pred in pairs:
        accumulate(hist, gt, pred, 19)
    np.testing.assert_array_equal(hist, kit.naive_hist(pairs, 19))


def test_accepts_wider_integer_types():
    gt = np.array([[0, 255]], np.int64)
    pred = np.array([[300, 0]], np.int64)  # >= 255 is "no class" as well
    np.testing.assert_array_equal(accumulate(new_hist(2), gt, pred, 2), [[0, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.array([[0, 7]], np.uint8), np.array([[0, 0]], np.uint8), r"value\(s\) \[7\]"),
        (np.array([[0]], np.uint8), np.array([[0, 0]], np.uint8), "differ in shape"),
        (np.array([[0.0]]), np.array([[0]], np.uint8), "integers"),
    ],
)
def test_bad_inputs(gt, pred, message):
    with pytest.raises(ValueError, match=message):
        accumulate(new_hist(3), gt, pred, 3)


def test_empty_matrix_scores_zero():
    s = scores(new_hist(3))
    assert (s["per_pixel_acc"], s["per_class_acc"], s["class_iou"]) == (0.0, 0.0, 0.0)


def _peak(frames: int) -> int:
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 19, (64, 64)).astype(np.uint8)
    pred = rng.integers(0, 20, (64, 64)).astype(np.uint8)
    hist = new_hist(19)
    tracemalloc.start()
    for _ in range(frames):
        accumulate(hist, gt.copy(), pred.copy(), 19)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_is_flat_in_the_number_of_frames():
    small, large = _peak(10), _peak(100)
    assert large < small * 1.2 + 16_384


def test_all_ignore_labels_score_zero_with_a_warning():
    """Issue 9.9: no scored pixel at all is said, not silently reported as 0.000."""
    from p2ptools.eval.confusion import NO_PIXELS_WARNING

    hist = new_hist(5)
    accumulate(hist, np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8), 5)
    block = scores(hist)
    assert block["pixels"] == 0 and block["per_pixel_acc"] == 0.0 and block["warning"] == NO_PIXELS_WARNING
    accumulate(hist, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), 5)
    assert "warning" not in scores(hist)
