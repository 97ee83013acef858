"""The ``cityscapes`` builder: labels -> photos pairs from the original Cityscapes archives.

Reads ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` directly (or their
extracted folders, or one folder holding both trees; the top folders may also be given
themselves, e.g. ``--source leftImg8bit --source gtFine``)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_labelIds.png

A = the photo resized to ``--size`` (area filter when shrinking, bicubic when enlarging);
B = the label image rendered from ``gtFine_labelIds`` through :data:`p2ptools.labels.CITYSCAPES`
after nearest-neighbour resizing, so every B pixel is exactly one class color (ignore = black).
``labels/<split>/<name>.png`` holds the train ids (0-18, 255 = ignore) at the output size, for
training and checking scorers. train -> ``train/``, val -> ``val/``; the test split has no public
labels and is skipped (counted in the manifest). Names keep the frame id: ``<city>_<seq>_<frame>``.
Pairs are written as PNG by default: JPEG (``--format jpg``, as pix2pix's published files) would
blend the class colors of B again.

``--ids-extras`` also writes, for pix2pixHD, ``label_ids/<split>/<name>.png`` (the label ids 0..33
as in ``gtFine_labelIds``) and ``instance_ids/<split>/<name>.png`` (``gtFine_instanceIds`` as a 16-bit
PNG: the label id for stuff, ``label id * 1000 + k`` for the k-th object), both resized
nearest-neighbour; the manifest records them as extras of each pair. ``--aspect keep`` keeps the
source's 2:1 aspect (``--size 1024`` gives 2048x1024 halves, pix2pixHD's full resolution) instead of
square halves.

``--label-source color`` renders B like the pix2pix reference preparation script instead: the
``gtFine_color`` image resized with PIL's bicubic filter, which blends class colors at boundaries
(for comparison only; the label PNGs still come from ``labelIds``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, open_sources
from p2ptools.errors import InputFileError
from p2ptools.imageio import check_complete, decode_image
from p2ptools.labels import CITYSCAPES

#: labelIds PNGs hold the ids 0..33 of the official table (-1, license plate, never occurs there).
MAX_LABEL_ID = 33
BUILT_SPLITS = ("train", "val")

_PHOTO_RE = re.compile(r"(?:^|/)(train|val|test)/([^/]+)/([^/]+?)_(\d{6})_(\d{6})_leftImg8bit\.png$")
_LABEL_RE = re.compile(r"(?:^|/)(train|val|test)/([^/]+)/([^/]+?)_(\d{6})_(\d{6})_gtFine_(labelIds|color|instanceIds)\.png$")

DOWNLOAD_HELP = (
    "Cityscapes needs a free account: register at https://www.cityscapes-dataset.com, download "
    "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from its Downloads page, then run "
    "p2ptools make-dataset cityscapes --source leftImg8bit_trainvaltest.zip --source gtFine_trainvaltest.zip"
)


@dataclass(frozen=True)
class CityscapesOptions:
    """Options of :class:`CityscapesBuilder`."""

    label_source: str = field(
        default="ids",
        metadata={
            "help": "B from gtFine_labelIds rendered with nearest resizing (ids), or the reference's route: "
            "gtFine_color resized with a smoothing filter (color; blends colors, for comparison).",
            "choices": ("ids", "color"),
        },
    )
    ids_extras: bool = field(
        default=False,
        metadata={"help": "Also write label_ids/ (label ids 0..33) and instance_ids/ (16-bit instance ids) beside the "
                          "pairs, nearest resizing: the inputs of pix2pixHD.", "flag": "--ids-extras"},
    )
    aspect: str = field(
        default="square",
        metadata={"help": "Halves of --size x --size (square), or --size high keeping the source's aspect "
                          "(keep: 2048x1024 at --size 1024).", "choices": ("square", "keep")},
    )


def output_size(width: int, height: int, size: int, aspect: str) -> tuple[int, int]:
    """(width, height) of a half: ``size`` x ``size``, or ``size`` high with the source's aspect kept."""
    return (size, size) if aspect == "square" else (max(1, round(size * width / height)), size)


def resize_photo(image: np.ndarray, size: int, aspect: str = "square") -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) (or ``size`` high, aspect kept): area filter when
    shrinking, bicubic when enlarging."""
    h, w = image.shape[:2]
    tw, th = output_size(w, h, size, aspect)
    interp = cv2.INTER_AREA if tw * th <= w * h and tw <= w and th <= h else cv2.INTER_CUBIC
    return cv2.resize(image, (tw, th), interpolation=interp)


def resize_ids(ids: np.ndarray, size: int, aspect: str = "square") -> np.ndarray:
    """An id map (uint8 or uint16) resized nearest-neighbour like :func:`resize_photo`'s output."""
    return cv2.resize(ids, output_size(ids.shape[1], ids.shape[0], size, aspect), interpolation=cv2.INTER_NEAREST)


def decode_photo(data: bytes, name: str, size: int, aspect: str = "square") -> np.ndarray:
    """Decode a photo and resize it with :func:`resize_photo`: (size, size, 3) uint8 RGB.

    The BGR -> RGB swap is done after resizing (they commute), on 64x fewer pixels at 2048x1024.
    """
    check_complete(data, name)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise InputFileError(name, "not a readable image (corrupt or unknown format)" if data else "empty file")
    return cv2.cvtColor(resize_photo(image, size, aspect), cv2.COLOR_BGR2RGB)


def render_label_ids(image: np.ndarray, size: int, name: str = "<labelIds>", aspect: str = "square") -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes labelIds (H, W) uint8 -> (color (size, size, 3), train ids (size, size)).

    Resizing is nearest-neighbour on the ids, so the colors are exactly the table's.

    Raises:
        InputFileError: not a single-channel 8-bit image, or ids outside 0..33 (the values listed).
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise InputFileError(name, f"expected a single-channel 8-bit labelIds PNG, got shape {image.shape} {image.dtype}")
    if int(image.max()) > MAX_LABEL_ID:
        bad = np.unique(image[image > MAX_LABEL_ID])
        shown = ", ".join(map(str, bad[:10].tolist())) + (", ..." if len(bad) > 10 else "")
        raise InputFileError(name, f"label ids outside the Cityscapes table 0..{MAX_LABEL_ID}: {shown}")
    small = resize_ids(image, size, aspect)
    train_ids = CITYSCAPES.id_lut()[small]
    return CITYSCAPES.render(train_ids), train_ids


class CityscapesBuilder(DatasetBuilder):
    """Cityscapes labels|photos from the original leftImg8bit and gtFine archives."""

    name = "cityscapes"
    version = "1"
    summary = "Cityscapes: A = photo, B = labels rendered from gtFine_labelIds (nearest); train/val, frame names kept."
    source_layout = (
        "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip (or their folders, or one folder holding both): "
        "{leftImg8bit|gtFine}/{train,val,test}/<city>/<city>_<seq>_<frame>_{leftImg8bit|gtFine_labelIds}.png"
    )
    Options = CityscapesOptions
    default_format = "png"  # B is a label map: JPEG would blend its class colors again
    download_help = DOWNLOAD_HELP

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        self.tree = open_sources(sources)
        names = self.tree.names()
        photos: list[tuple[str, str, str, str]] = []  # (split, city, stem, name)
        labels: dict[tuple[str, str, str, str], str] = {}
        for n in names:
            if m := _PHOTO_RE.search(n):
                split, city, prefix, seq, frame = m.groups()
                photos.append((split, city, f"{prefix}_{seq}_{frame}", n))
            elif m := _LABEL_RE.search(n):
                split, city, prefix, seq, frame, kind = m.groups()
                labels[(split, city, f"{prefix}_{seq}_{frame}", kind)] = n
        where = ", ".join(str(s) for s in sources)
        if not photos:
            raise InputFileError(where, "no leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png files: expected leftImg8bit_trainvaltest.zip or its folder")
        if not labels:
            raise InputFileError(where, "no gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png files: expected gtFine_trainvaltest.zip or its folder")
        self.skipped_test = sum(1 for p in photos if p[0] == "test")
        kind = "labelIds"
        photos.sort(key=lambda p: (BUILT_SPLITS.index(p[0]) if p[0] in BUILT_SPLITS else 9, p[2]))
        for split, city, stem, photo in photos:
            if split not in BUILT_SPLITS:
                continue
            ids = labels.get((split, city, stem, kind))
            color = labels.get((split, city, stem, "color"))
            expected = f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png"
            job_sources = (photo, ids or expected) if self.options.label_source == "ids" else (photo, color or expected.replace("labelIds", "color"), ids or expected)
            inst = labels.get((split, city, stem, "instanceIds"))
            if self.options.ids_extras:
                job_sources += (inst or expected.replace("labelIds", "instanceIds"),)
            yield PairJob(split, stem, job_sources, {"photo": photo, "ids": ids, "color": color, "inst": inst, "expected": expected})

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        p = job.payload
        if p["ids"] is None:
            raise InputFileError(self.tree.display(p["photo"]), f"photo without its label: {p['expected']} is not in the source")
        aspect = self.options.aspect
        photo = decode_photo(self.tree.read_bytes(p["photo"]), self.tree.display(p["photo"]), build.size, aspect)
        ids_name = self.tree.display(p["ids"])
        ids = decode_image(self.tree.read_bytes(p["ids"]), ids_name, mode="unchanged")
        color, train_ids = render_label_ids(ids, build.size, ids_name, aspect)
        if self.options.label_source == "color":
            color = self._color_route(p, color.shape[1], color.shape[0])
        extras = {"labels": train_ids}
        if self.options.ids_extras:
            extras["label_ids"] = resize_ids(ids, build.size, aspect)
            extras["instance_ids"] = self._instance_ids(p, ids.shape, build.size)
        return PairResult(photo, color, extras)

    def _instance_ids(self, p: dict[str, Any], shape: tuple[int, ...], size: int) -> np.ndarray:
        """gtFine_instanceIds (16-bit, or 8-bit for frames without objects) resized nearest, as uint16."""
        expected = p["expected"].replace("labelIds", "instanceIds")
        if p["inst"] is None:
            raise InputFileError(self.tree.display(p["photo"]), f"--ids-extras: {expected} is not in the source")
        name = self.tree.display(p["inst"])
        inst = decode_image(self.tree.read_bytes(p["inst"]), name, mode="unchanged")
        if inst.ndim != 2 or inst.dtype not in (np.uint8, np.uint16) or inst.shape != shape[:2]:
            raise InputFileError(name, f"expected a single-channel 8- or 16-bit instanceIds PNG of the label's size "
                                       f"{shape[1]}x{shape[0]}, got shape {inst.shape} {inst.dtype}")
        return resize_ids(inst.astype(np.uint16), size, self.options.aspect)

    def _color_route(self, p: dict[str, Any], width: int, height: int) -> np.ndarray:
        """The reference's route: gtFine_color (RGBA) -> RGB -> PIL bicubic resize (blends colors)."""
        from PIL import Image

        if p["color"] is None:
            raise InputFileError(self.tree.display(p["photo"]), f"photo without its color label: {p['expected'].replace('labelIds', 'color')} is not in the source")
        rgb = decode_image(self.tree.read_bytes(p["color"]), self.tree.display(p["color"]))
        return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))

    def manifest_extras(self) -> dict[str, Any]:
        extras = {
            "classes": CITYSCAPES.to_dict(),
            "label_source": self.options.label_source,
            "aspect": self.options.aspect,
            "labels": "labels/<split>/<name>.png: train ids 0..18 (255 = ignore) at the output size, nearest resizing",
            "skipped_test_frames": getattr(self, "skipped_test", 0),
            "note": "the test split has no public labels and is not built",
        }
        if self.options.ids_extras:
            extras["label_ids"] = "label_ids/<split>/<name>.png: Cityscapes label ids 0..33 (gtFine_labelIds), nearest resizing"
            extras["instance_ids"] = ("instance_ids/<split>/<name>.png: 16-bit gtFine_instanceIds (label id, or label id * 1000 + k "
                                      "for object k), nearest resizing")
            extras["label_nc"] = MAX_LABEL_ID + 2  # ids 0..33 plus the license plate's slot: pix2pixHD's --label-nc 35
        return extras
