"""The ``facades`` builder: CMP Facade Database photos and their label images.

Sources: ``CMP_facade_DB_base.zip`` and/or ``CMP_facade_DB_extended.zip`` (or their folders)::

    base/cmp_bNNNN.{jpg,png,xml}      378 facades       label_names.txt, readme.txt
    extended/cmp_xNNNN.{jpg,png,xml}  228 facades (numbers not contiguous)

A = the photo, B = the label PNG rendered through its *own* palette (the PNGs are single-channel
palette images with values 1..12; the class order is read from ``label_names.txt``), both
resized to ``--size`` x ``--size`` (photo: area filter when shrinking; labels: nearest, so B holds
palette colors only). The 606 facades of both parts are shuffled with ``--seed`` and split
400/100/106 into train/val/test, as in pix2pix; with fewer facades (one part only) the split keeps
these proportions. ``--class-index`` also writes ``labels/<split>/<name>.png`` with the label
values (1..12 at the output size; the manifest maps values to class names).
Pairs are written as PNG by default: JPEG (``--format jpg``, as pix2pix's published files) would
blend the class colors of B again.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, open_sources
from p2ptools.download import PIX2PIX_BASE, RemoteFile
from p2ptools.errors import InputFileError
from p2ptools.imageio import check_complete, decode_image

SPLIT_COUNTS = (400, 100, 106)  # pix2pix's facades split of the 606 CMP images
CMP_BASE = "https://cmp.felk.cvut.cz/~tylecr1/facade"
_ITEM_RE = re.compile(r"(?:^|/)(base|extended)/(cmp_[bx]\d+)\.(jpg|png)$", re.IGNORECASE)
_NAMES_RE = re.compile(r"(?:^|/)label_names\.txt$")


@dataclass(frozen=True)
class FacadesOptions:
    """Options of :class:`FacadesBuilder`."""

    class_index: bool = field(default=False, metadata={"help": "Also write labels/<split>/<name>.png with the label values (1..12)."})


def parse_label_names(text: str, name: str = "label_names.txt") -> dict[int, str]:
    """``label_names.txt`` -> {label value: class name}.

    Accepts ``<value> <name>`` or ``<name> <value>`` lines (extra numbers ignored), or bare names
    numbered from 1 in file order; blank lines and ``#`` comments are skipped.
    """
    out: dict[int, str] = {}
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for i, line in enumerate(lines):
        tokens = line.replace(",", " ").split()
        numbers = [int(t) for t in tokens if t.isdigit()]
        words = [t for t in tokens if not t.isdigit()]
        if not words:
            raise InputFileError(name, f"line {i + 1} has no class name: {line.strip()!r}")
        value = numbers[0] if numbers else i + 1
        if value in out:
            raise InputFileError(name, f"label value {value} listed twice")
        out[value] = " ".join(words)
    if not out:
        raise InputFileError(name, "no class names")
    return out


def read_palette_png(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A palette PNG -> (indices (H, W) uint8, palette (N, 3) uint8), read with PIL.

    OpenCV would expand the palette to colors; PIL keeps the indices.
    """
    from PIL import Image, UnidentifiedImageError

    check_complete(data, name)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode != "P":
                raise InputFileError(name, f"expected a palette (mode P) label PNG, got mode {img.mode}")
            indices = np.array(img, dtype=np.uint8)
            palette = np.array(img.getpalette() or [], np.uint8).reshape(-1, 3)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputFileError(name, f"not a readable image ({exc})") from None
    return indices, palette


def split_counts(n: int) -> tuple[int, int, int]:
    """Train/val/test counts for ``n`` facades in pix2pix's 400/100/106 proportions."""
    total = sum(SPLIT_COUNTS)
    n_train = round(n * SPLIT_COUNTS[0] / total)
    n_val = round(n * SPLIT_COUNTS[1] / total)
    return n_train, n_val, n - n_train - n_val


class FacadesBuilder(DatasetBuilder):
    """CMP facades: A = photo, B = label image through its own palette; 400/100/106 split."""

    name = "facades"
    version = "1"
    summary = "CMP Facade DB: A = photo, B = labels in their own palette colors; 400/100/106 split with the seed."
    source_layout = (
        "CMP_facade_DB_base.zip and/or CMP_facade_DB_extended.zip (or their folders): "
        "base/cmp_bNNNN.{jpg,png}, extended/cmp_xNNNN.{jpg,png}, label_names.txt"
    )
    Options = FacadesOptions
    default_format = "png"  # B is a label map: JPEG would blend its class colors again
    downloads = {
        "original": (RemoteFile(CMP_BASE, "CMP_facade_DB_base.zip"), RemoteFile(CMP_BASE, "CMP_facade_DB_extended.zip")),
        "prebuilt": (RemoteFile(PIX2PIX_BASE, "facades.tar.gz"),),
    }

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        self.tree = open_sources(sources)
        where = ", ".join(str(s) for s in sources)
        items: dict[str, dict[str, str]] = {}
        names_file = None
        for n in self.tree.names():
            if m := _ITEM_RE.search(n):
                items.setdefault(m.group(2).lower(), {})[m.group(3).lower()] = n
            elif _NAMES_RE.search(n) and names_file is None:
                names_file = n
        if not items:
            raise InputFileError(where, "no base/cmp_bNNNN.jpg or extended/cmp_xNNNN.jpg files: expected CMP_facade_DB_base.zip or CMP_facade_DB_extended.zip")
        if names_file is None:
            raise InputFileError(where, "no label_names.txt (it ships in CMP_facade_DB_base.zip); add that archive, or a folder holding the file, as a --source")
        try:
            text = self.tree.read_bytes(names_file).decode("utf-8")
        except UnicodeDecodeError:
            raise InputFileError(self.tree.display(names_file), "not a UTF-8 text file") from None
        self.classes = parse_label_names(text, self.tree.display(names_file))
        self.parts = sorted({"base" if k.startswith("cmp_b") else "extended" for k in items})
        keys = sorted(items)
        order = np.random.default_rng(build.seed).permutation(len(keys))
        n_train, n_val, _ = split_counts(len(keys))
        self.counts = split_counts(len(keys))
        jobs = []
        for rank, idx in enumerate(order):
            key = keys[idx]
            split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            files = items[key]
            jobs.append(PairJob(split, key, tuple(files[e] for e in ("jpg", "png") if e in files), files))
        split_order = {"train": 0, "val": 1, "test": 2}
        yield from sorted(jobs, key=lambda j: (split_order[j.split], j.name))

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        files = job.payload
        if "png" not in files:
            raise InputFileError(self.tree.display(files["jpg"]), f"photo without its label: no {job.name}.png beside it")
        if "jpg" not in files:
            raise InputFileError(self.tree.display(files["png"]), f"label without its photo: no {job.name}.jpg beside it")
        photo = decode_image(self.tree.read_bytes(files["jpg"]), self.tree.display(files["jpg"]))
        label_name = self.tree.display(files["png"])
        indices, palette = read_palette_png(self.tree.read_bytes(files["png"]), label_name)
        if indices.shape != photo.shape[:2]:
            raise InputFileError(label_name, f"size {indices.shape[1]}x{indices.shape[0]} differs from its photo ({photo.shape[1]}x{photo.shape[0]})")
        valid = np.zeros(256, bool)
        valid[[v for v in self.classes if v < min(256, len(palette))]] = True
        if not valid[indices].all():
            bad = np.unique(indices[~valid[indices]])
            raise InputFileError(
                label_name,
                f"label values outside the class table {min(self.classes)}..{max(self.classes)} "
                f"(or its {len(palette)}-color palette): {', '.join(map(str, bad[:10].tolist()))}",
            )
        size = build.size
        h, w = photo.shape[:2]
        photo = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA if size <= min(h, w) else cv2.INTER_CUBIC)
        small = cv2.resize(indices, (size, size), interpolation=cv2.INTER_NEAREST)
        extras = {"labels": small} if self.options.class_index else {}
        return PairResult(photo, palette[small], extras)

    def manifest_extras(self) -> dict[str, Any]:
        return {
            "classes": {str(v): n for v, n in sorted(self.classes.items())},
            "parts": self.parts,
            "split_rule": f"sorted names shuffled with the seed, then {self.counts[0]}/{self.counts[1]}/{self.counts[2]} "
            f"(pix2pix's 400/100/106 of 606, proportional for other counts)",
            "labels": "labels/<split>/<name>.png: label values (see classes), nearest resizing" if self.options.class_index else None,
        }
