"""Streaming confusion matrix and the FCN-score protocol's numbers (GUIDE.md section 4).

The matrix ``hist`` has shape (C, C + 1), int64: rows are ground-truth classes, columns predicted
classes, and the extra last column counts pixels predicted as "no class" (an index >= C, e.g. the
FCN's 20th score channel). Those pixels are wrong for their row (they count in ``row_c`` and in the
total) but are no class's false positive (the extra column never enters a column sum).
Ground-truth pixels equal to 255 (ignore) are dropped.

Example:
    >>> import numpy as np
    >>> hist = new_hist(2)
    >>> gt = np.array([[0, 1, 255]], np.uint8); pred = np.array([[0, 19, 1]], np.uint8)
    >>> accumulate(hist, gt, pred, 2).tolist()
    [[1, 0, 0], [0, 0, 1]]
    >>> scores(hist)["per_pixel_acc"]
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from p2ptools.labels import IGNORE


def new_hist(num_classes: int) -> np.ndarray:
    """An empty (C, C + 1) int64 confusion matrix (last column: "no class" predictions)."""
    if num_classes < 1 or num_classes >= IGNORE:
        raise ValueError(f"num_classes must be in [1, 254], got {num_classes}")
    return np.zeros((num_classes, num_classes + 1), np.int64)


def accumulate(hist: np.ndarray, gt_train_ids: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Add one frame (or a batch of frames) to ``hist`` in place and return it.

    Args:
        hist: (C, C + 1) int64 matrix from :func:`new_hist`.
        gt_train_ids: integer train ids of any shape, values in [0, C) or 255 (ignored).
        pred: predicted class indices, same shape; values >= C mean "no class".
        num_classes: C.

    One ``np.bincount`` over the uint16 codes ``gt << 8 | pred`` counts every pixel, ignore rows
    included, in 65,536 bins; the rows and columns that matter are then folded in. Memory is a
    few copies of one frame, independent of how many frames were accumulated.

    Raises:
        ValueError: shapes differ, ``hist`` has the wrong shape, or ground truth holds values that
            are neither a class nor 255 (the offending values are listed).
    """
    c = num_classes
    if hist.shape != (c, c + 1):
        raise ValueError(f"hist must have shape {(c, c + 1)}, got {hist.shape}")
    if gt_train_ids.shape != pred.shape:
        raise ValueError(f"ground truth {gt_train_ids.shape} and prediction {pred.shape} differ in shape")
    gt = _as_uint8(gt_train_ids, "ground truth")
    pr = _as_uint8(pred, "prediction", clip=True)
    code = np.left_shift(gt.ravel(), 8, dtype=np.uint16)  # uint16 codes: the smallest copy
    code |= pr.ravel()
    counts = np.bincount(code, minlength=256 * 256).reshape(256, 256)
    bad_rows = np.flatnonzero(counts[c:IGNORE].any(axis=1))
    if bad_rows.size:
        values = (bad_rows + c).tolist()
        raise ValueError(f"ground truth holds value(s) {values[:10]} that are neither a class in [0, {c}) nor {IGNORE} (ignore)")
    hist[:, :c] += counts[:c, :c]
    hist[:, c] += counts[:c, c:].sum(axis=1)
    return hist


def _as_uint8(a: np.ndarray, what: str, clip: bool = False) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got {a.dtype}")
    if a.size and a.min() < 0:
        raise ValueError(f"{what} holds negative values (min {int(a.min())})")
    if clip:  # any index >= 255 is "no class" as much as 255 is
        return np.minimum(a, 255).astype(np.uint8)
    if a.size and a.max() > 255:
        raise ValueError(f"{what} holds values above 255 (max {int(a.max())})")
    return a.astype(np.uint8)


#: Set as ``"warning"`` in the scores when no pixel was scored: the zeros then mean nothing.
NO_PIXELS_WARNING = ("no pixel was scored: every ground-truth label is ignore (255 / unlabelled), so the scores of 0 "
                     "mean nothing; check --labels / --cityscapes")


def scores(hist: np.ndarray, names: Sequence[str] | None = None) -> dict:
    """The protocol's numbers from a (C, C + 1) matrix.

    Returns:
        ``{"per_pixel_acc", "per_class_acc", "class_iou", "per_class": {name: {"acc", "iou"}},
        "pixels"}``: per-pixel accuracy = trace / total; per-class accuracy = mean over the C
        classes of H_cc / row_c; class IoU = mean over the C classes of H_cc / (row_c + col_c -
        H_cc). A class with an empty denominator scores 0 and stays in the mean (as the reference
        does). ``names`` default to ``class_<i>``. With no scored pixel at all (every label
        ignored) the block also holds ``"warning"`` (:data:`NO_PIXELS_WARNING`).
    """
    c = hist.shape[0]
    if hist.ndim != 2 or hist.shape[1] != c + 1:
        raise ValueError(f"expected a (C, C + 1) confusion matrix, got shape {hist.shape}")
    names = list(names) if names is not None else [f"class_{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a matrix of {c} classes")
    h = hist.astype(np.float64)
    diag = np.diag(h[:, :c])
    rows = h.sum(axis=1)
    cols = h[:, :c].sum(axis=0)
    total = h.sum()
    acc = _safe_div(diag, rows)
    iou = _safe_div(diag, rows + cols - diag)
    block = {
        "per_pixel_acc": float(diag.sum() / total) if total > 0 else 0.0,
        "per_class_acc": float(acc.mean()),
        "class_iou": float(iou.mean()),
        "per_class": {name: {"acc": float(a), "iou": float(i)} for name, a, i in zip(names, acc, iou, strict=True)},
        "pixels": int(total),
    }
    if total == 0:
        block["warning"] = NO_PIXELS_WARNING
    return block


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out
