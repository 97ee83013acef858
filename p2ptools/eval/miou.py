"""The semantic-synthesis mIoU protocol (``p2ptools eval --miou NAME``), every choice recorded.

After pix2pixHD and SPADE, label -> photo results on Cityscapes are scored by segmenting the
generated photos with DRN-D-105 (fyu/drn, ``drn-d-105_ms_cityscapes.pth``) and reporting mIoU over
the 19 train classes and pixel accuracy. The protocol's choices, made explicit here and written
into ``report.json`` (block ``miou``), the report pages and the tables' caption:

- ``size``: ``native`` segments each generated image at its own size; ``1024x2048`` (Cityscapes'
  full resolution, 2048 wide and 1024 high, as the papers write it) or any ``WxH`` first resizes
  it bilinearly (``cv2`` ``INTER_LINEAR``, half-pixel centres; ``INTER_AREA`` when shrinking).
- ``label_resize``: ground-truth labels (``gtFine_labelIds`` -> train ids) brought to the size the
  image is segmented at: ``nearest`` (PIL's nearest, pixel centres, as SPADE's loader) or
  ``bilinear-argmax`` (one plane per class plus one for "ignore", each resized with PIL's bilinear
  filter -- antialiased when shrinking -- then the argmax; ties go to the lower class, "ignore" last).
- ``split``: the Cityscapes split the labels come from (``val``: 500 images); the results must
  cover it exactly -- one result per label map, the same count, or the evaluation stops.
- ``multi_scale``: the scorer's single-scale or multi-scale test (DRN: ``segment.py``'s, flip off).

Scores over one dataset-level confusion matrix H (ignore pixels dropped), as fyu/drn's
``segment.py``: class IoU = H_cc / (row_c + col_c - H_cc), mIoU = the mean over classes with a
non-empty denominator (``np.nanmean``: a class absent from both ground truth and predictions is left
out, listed as null); pixel accuracy = trace(H) / sum(H).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.confusion import accumulate, new_hist
from p2ptools.eval.matching import CITYSCAPES_SPLITS, CityscapesLabels, FrameIndex, LabelFolder, LabelSource, ResultSet
from p2ptools.eval.scorer_registry import load_scorer_plugin
from p2ptools.eval.scorers import ScorerOptions, SegmentationScorer
from p2ptools.labels import IGNORE, ClassTable

LABEL_RESIZES = ("nearest", "bilinear-argmax")
#: ``--miou-size 1024x2048``: Cityscapes' full resolution, (height, width).
CITYSCAPES_FULL = (1024, 2048)
IMAGE_RESIZE = "bilinear (cv2 INTER_LINEAR, half-pixel centres; INTER_AREA when shrinking), uint8"


@dataclass(frozen=True)
class MiouOptions:
    """The protocol's choices (module docstring) and the scorer that segments.

    Attributes:
        scorer: registry name (``p2ptools scorers``), e.g. ``drn-d-105``.
        weights: the scorer's local weights file.
        size: ``native``, ``1024x2048`` or ``WxH``.
        label_resize: ``nearest`` or ``bilinear-argmax``.
        split: Cityscapes split of the labels (the results must cover it).
        multi_scale: the scorer's multi-scale test.
    """

    scorer: str = "drn-d-105"
    weights: Path | None = None
    size: str = "native"
    label_resize: str = "nearest"
    split: str = "val"
    multi_scale: bool = False

    def check(self) -> None:
        """Raise ConfigError naming the option with a bad value."""
        if self.weights is None:
            raise ConfigError(f"--miou {self.scorer} needs --miou-weights FILE (alias --drn-weights; for drn-d-105: fyu/drn's drn-d-105_ms_cityscapes.pth)")
        parse_miou_size(self.size)
        if self.label_resize not in LABEL_RESIZES:
            raise ConfigError(f"--label-resize: invalid value {self.label_resize!r}; choose from {', '.join(LABEL_RESIZES)}")
        if self.split not in CITYSCAPES_SPLITS:
            raise ConfigError(f"--miou-split: invalid value {self.split!r}; choose from {', '.join(CITYSCAPES_SPLITS)}")


def parse_miou_size(text: str) -> tuple[int, int] | None:
    """``--miou-size`` -> (height, width), or None for ``native``.

    Example:
        >>> parse_miou_size("1024x2048"), parse_miou_size("512x256"), parse_miou_size("native")
        ((1024, 2048), (256, 512), None)
    """
    if text == "native":
        return None
    if text == "1024x2048":
        return CITYSCAPES_FULL
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--miou-size: expected native, 1024x2048 or WxH (e.g. 512x256), got {text!r}") from None
    if width < 1 or height < 1:
        raise ConfigError(f"--miou-size: width and height must be positive, got {text!r}")
    return height, width


def resize_labels(labels: np.ndarray, size: tuple[int, int], method: str, num_classes: int) -> np.ndarray:
    """(h, w) uint8 train ids (255 = ignore) -> (H, W) at ``size`` = (H, W) by ``method``
    (``nearest`` or ``bilinear-argmax``, see the module docstring); unchanged at the same size.

    Example:
        >>> resize_labels(np.array([[0, 1], [2, 255]], np.uint8), (4, 4), "nearest", 19)[:, 0].tolist()
        [0, 0, 2, 2]
    """
    height, width = int(size[0]), int(size[1])
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"expected (H, W) uint8 train ids, got {labels.dtype} {labels.shape}")
    if labels.shape == (height, width):
        return labels
    if method == "nearest":
        return np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))
    if method != "bilinear-argmax":
        raise ValueError(f"label resize must be one of {', '.join(LABEL_RESIZES)}, got {method!r}")
    best = np.full((height, width), -1.0, np.float32)
    out = np.full((height, width), IGNORE, np.uint8)
    for value in [*range(num_classes), IGNORE]:  # class planes first, "ignore" last: ties go to the class
        plane = labels == value
        if not plane.any():
            continue
        soft = np.asarray(Image.fromarray(plane.astype(np.float32)).resize((width, height), Image.BILINEAR))
        better = soft > best
        out[better], best[better] = value, soft[better]
    return out


def miou_label_source(root: Path | None, labels: Path | None, classes: ClassTable, frames: FrameIndex, split: str) -> LabelSource:
    """Cityscapes ``gtFine/<split>`` (only that split), else a ``--labels`` folder."""
    if root is not None:
        return CityscapesLabels(root, classes, frames, split=split)
    if labels is not None:
        return LabelFolder(labels, classes, frames)
    raise ConfigError("--miou needs the ground-truth labels: give --cityscapes ROOT (gtFine/<split>) or --labels DIR")


def check_coverage(results: ResultSet, source: LabelSource, split: str) -> dict[str, Any]:
    """Each result matches one distinct label map and the results cover the whole label set.

    Returns:
        ``{"split", "label_maps", "images"}`` for the report.

    Raises:
        InputFileError: a result without a label map, two results of one label map, or a count
            that differs from the split's (e.g. not the 500 Cityscapes val images).
    """
    if isinstance(source, CityscapesLabels):
        expected = len(list((source.gt / split).glob("*/*_gtFine_labelIds.png")))
        where, find = f"Cityscapes {split} ({source.gt / split})", source.path
    else:
        expected = len(source.files.by_stem)
        where, find = f"the label folder {source.files.folder}", lambda p: source.files.find(p, source.frames)
        split = None
    seen: dict[Path, Path] = {}
    for path in results.files:
        label = find(path)
        if label in seen:
            raise InputFileError(path, f"has the same ground truth as {seen[label].name} ({label.name}): the mIoU protocol scores each label map once")
        seen[label] = path
    if len(results.files) != expected:
        raise InputFileError(results.folder, f"{len(results.files)} result images for the {expected} label maps of {where}: the mIoU protocol scores the whole split, one result per label map")
    return {"split": split, "label_maps": expected, "images": len(results.files)}


def load_miou_scorer(options: MiouOptions, *, device: str = "cpu", precision: str = "fp32", tf32: bool = False, batch_size: int = 1) -> SegmentationScorer:
    """The scorer ``options.scorer`` from the registry, loaded from ``options.weights``."""
    options.check()
    return load_scorer_plugin(options.scorer, options.weights, ScorerOptions(device, precision, tf32, batch_size, options.multi_scale))


class MiouPass:
    """The mIoU share of one streaming pass over a results folder: a (C, C + 1) confusion matrix."""

    def __init__(self, results: ResultSet, options: MiouOptions, scorer: SegmentationScorer, labels: LabelSource) -> None:
        self.options, self.scorer, self.labels = options, scorer, labels
        self.size = parse_miou_size(options.size)
        self.coverage = check_coverage(results, labels, options.split)
        self.classes = scorer.classes
        self.hist = new_hist(self.classes.num_classes)

    def update(self, batch: list[Path], outputs: list[np.ndarray]) -> None:
        """Segment the batch's result images and add them against their labels."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(outputs):
            groups.setdefault(self.size or tuple(image.shape[:2]), []).append(i)
        c = self.classes.num_classes
        for size, idx in groups.items():
            pred = np.asarray(self.scorer.predict([outputs[i] for i in idx], size))
            if pred.shape != (len(idx), *size):
                raise ConfigError(f"scorer {self.options.scorer!r} returned predictions of shape {pred.shape}, expected {(len(idx), *size)}")
            for k, i in enumerate(idx):
                gt = resize_labels(self.labels.labels(batch[i]), size, self.options.label_resize, c)
                try:
                    accumulate(self.hist, gt, pred[k], c)
                except ValueError as exc:
                    raise InputFileError(batch[i], str(exc)) from None

    def state(self) -> dict[str, np.ndarray]:
        """The summable state (added over shards and ranks)."""
        return {"miou_hist": self.hist}

    def context(self) -> dict[str, Any]:
        """The protocol as recorded (identical across the shards of one evaluation)."""
        size = self.size
        return {
            **asdict(self.options), "weights": str(self.options.weights),
            "segmented_at": {"width": size[1], "height": size[0]} if size else "each image's own size",
            "image_resize": IMAGE_RESIZE if size else "none", "labels": self.labels.describe(), **self.coverage,
            "scorer_info": self.scorer.info(), "classes": self.classes.to_dict(),
        }  # fmt: skip


def miou_block(hist: np.ndarray, protocol: dict[str, Any], n_images: int) -> dict[str, Any]:
    """The report's ``miou`` block from a summed confusion matrix (module docstring)."""
    classes = ClassTable.from_dict(protocol["classes"])
    c = classes.num_classes
    h = hist.astype(np.float64)
    diag, rows, cols = np.diag(h[:, :c]), h.sum(axis=1), h[:, :c].sum(axis=0)
    den = rows + cols - diag
    iou = np.where(den > 0, diag / np.where(den > 0, den, 1), np.nan)
    total = h.sum()
    present = ~np.isnan(iou)
    record = {k: v for k, v in protocol.items() if k != "classes"}
    block = {
        "miou": float(np.nanmean(iou)) if present.any() else None, "accuracy": float(diag.sum() / total) if total > 0 else None,
        "per_class_iou": {name: (float(v) if ok else None) for name, v, ok in zip(classes.names, iou, present, strict=True)},
        "classes_in_mean": int(present.sum()), "num_classes": c, "classes": classes.name, "pixels": int(total), "n_images": n_images,
        "protocol": record, "protocol_text": protocol_text(record),
    }  # fmt: skip
    if total == 0:
        block["warning"] = "no pixel was scored: every ground-truth label is ignore"
    return block


def protocol_text(protocol: dict[str, Any]) -> str:
    """One line naming every choice, for captions and report notes."""
    at = protocol["segmented_at"]
    size = f"upsampled/resized to {at['width']}x{at['height']} (WxH, bilinear)" if isinstance(at, dict) else "segmented at their native size"
    test = "multi-scale (" + ", ".join(f"{s:g}" for s in protocol["scorer_info"].get("scales", [])) + "; no flip)" if protocol["multi_scale"] else "single-scale"
    where = f"Cityscapes {protocol['split']} ({protocol['label_maps']} label maps)" if protocol.get("split") else f"{protocol['label_maps']} label maps"
    return (f"mIoU protocol: {protocol['scorer']} {test}, weights {Path(protocol['weights']).name}; images {size}; "
            f"labels resized {protocol['label_resize']}; {where}, {protocol['images']} images; "
            "IoU nanmean over classes present (fyu/drn segment.py), pixel accuracy over non-ignore pixels")
