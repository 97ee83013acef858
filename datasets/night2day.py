"""The ``night2day`` builder: pairs of a night and a day image of one webcam (Transient Attributes).

Source: ``aligned_images.tar`` (``imageAlignedLD/<8-digit webcam>/<img>.jpg``) and ``annotations.tar``
(``annotations/annotations.tsv`` and ``annotations/attributes.txt``), or their extracted folders, given
as one or several ``--source`` (a folder holding the two tars works too).

``annotations.tsv``: one line per image, tab-separated: ``<webcam>/<img>.jpg`` then one
``value,confidence`` field per attribute in the order of ``attributes.txt`` (values in [0, 1]).

Pairing rule (ours: the paper's is unpublished). Within one webcam,

- night images: ``night >= --night-min`` and ``daylight <= --night-daylight-max`` (0.8 / 0.2);
- day images: ``daylight >= --day-min`` and ``night <= --day-night-max`` (0.8 / 0.2);
- every night image is paired with up to ``--days-per-night`` (10) day images drawn without
  replacement with ``job_rng(seed, "night2day", webcam)``; a webcam gives at most
  ``--max-pairs-per-webcam`` (250) pairs, a seeded subset when it has more.

Splits are by webcam, so no webcam is in two splits: the webcams that give pairs are shuffled with the
seed; ``round(n * --test-fraction)`` go to test and ``round(n * --val-fraction)`` to val (at least one
each when the fraction is positive and there are three webcams or more), the rest to train. The
defaults, 0.1 and 0.01, give the paper's 10 test webcams and 90 train + 1 val of the 101.

A = the night image, B = the day image, each resized to ``--size`` x ``--size`` (no crop, like the
published set). Pair names: ``<webcam>_<night stem>_<day stem>``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, SourceTree, job_rng, open_source
from p2ptools.download import PIX2PIX_BASE, RemoteFile
from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import decode_image, is_image_name
from p2ptools.options import Range

IMAGE_DIR = "imageAlignedLD/"
TSV_NAME = "annotations.tsv"
ATTRIBUTES_NAME = "attributes.txt"
#: The Transient Attributes project's download folder (Laffont et al. 2014).
TRANSATTR_BASE = "http://transattr.cs.brown.edu/files"


@dataclass(frozen=True)
class Night2DayOptions:
    """Options of :class:`Night2DayBuilder` (defaults are ours, see the module docstring)."""

    night_min: float = field(default=0.8, metadata={"range": (0, 1), "help": "Night image: 'night' attribute at least this."})
    night_daylight_max: float = field(default=0.2, metadata={"range": (0, 1), "help": "Night image: 'daylight' attribute at most this."})
    day_min: float = field(default=0.8, metadata={"range": (0, 1), "help": "Day image: 'daylight' attribute at least this."})
    day_night_max: float = field(default=0.2, metadata={"range": (0, 1), "help": "Day image: 'night' attribute at most this."})
    days_per_night: int = field(default=10, metadata={"range": Range(1), "help": "Day images paired with each night image (at most)."})
    max_pairs_per_webcam: int = field(default=250, metadata={"range": Range(1), "help": "Pairs per webcam (at most)."})
    val_fraction: float = field(default=0.01, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of webcams put in val/."})
    test_fraction: float = field(default=0.1, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of webcams put in test/."})


def _expand(sources: Sequence[Path]) -> list[Path]:
    """A folder holding the original tars (and not their contents) stands for those tars."""
    out: list[Path] = []
    for src in sources:
        src = Path(src)
        tars = [src / n for n in ("aligned_images.tar", "annotations.tar")]
        if src.is_dir() and any(t.is_file() for t in tars) and not (src / "imageAlignedLD").is_dir():
            out += [t for t in tars if t.is_file()]
            if (src / "annotations").is_dir():
                out.append(src / "annotations")
        else:
            out.append(src)
    return out


def _find(trees: Sequence[SourceTree], basename: str, hint: str, sources: Sequence[Path]) -> tuple[SourceTree, str]:
    """The tree and name of the shallowest file called ``basename`` among the sources."""
    found = [(n.count("/"), i, n) for i, tree in enumerate(trees) for n in tree.names() if posixpath.basename(n) == basename]
    if not found:
        raise InputFileError(", ".join(map(str, sources)), f"no {basename} found ({hint})")
    _depth, i, name = min(found)
    return trees[i], name


def _image_index(trees: Sequence[SourceTree]) -> dict[str, tuple[int, str]]:
    """``<webcam>/<img>.jpg`` -> (tree index, member name), for trees holding ``imageAlignedLD/`` or
    being that folder themselves."""
    out: dict[str, tuple[int, str]] = {}
    for i, tree in enumerate(trees):
        inside = Path(tree.path).name == IMAGE_DIR.rstrip("/")
        for name in tree.names():
            if not is_image_name(name):
                continue
            if IMAGE_DIR in "/" + name:
                key = ("/" + name).split("/" + IMAGE_DIR, 1)[1]
            elif inside:
                key = name
            else:
                continue
            out.setdefault(key, (i, name))
    return out


def read_attributes(data: bytes, display: str) -> list[str]:
    """Attribute names, one per non-empty line of ``attributes.txt``."""
    names = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    for needed in ("night", "daylight"):
        if needed not in names:
            raise InputFileError(display, f"no {needed!r} attribute among the {len(names)} listed")
    return names


def read_annotations(data: bytes, display: str, n_attributes: int, wanted: Sequence[int]) -> dict[str, tuple[float, ...]]:
    """``annotations.tsv`` -> {``webcam/img.jpg``: values of the ``wanted`` attribute columns}.

    Raises:
        InputFileError: naming ``<file>:<line>`` for a line with the wrong number of fields, a field
            that is not ``value,confidence``, a value outside [0, 1] or a repeated image.
    """
    out: dict[str, tuple[float, ...]] = {}
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        where = f"{display}:{lineno}"
        if len(fields) != n_attributes + 1:
            raise InputFileError(where, f"expected 1 + {n_attributes} tab-separated fields, got {len(fields)}")
        key = fields[0].strip()
        if key.count("/") != 1 or not is_image_name(key):
            raise InputFileError(where, f"first field {key!r} is not <webcam>/<image>.jpg")
        values = []
        for col, raw in enumerate(fields[1:], 2):
            parts = raw.split(",")
            try:
                if len(parts) != 2:
                    raise ValueError
                value, _confidence = float(parts[0]), float(parts[1])
            except ValueError:
                raise InputFileError(where, f"field {col} is {raw!r}, expected value,confidence") from None
            if not 0.0 <= value <= 1.0:
                raise InputFileError(where, f"value {value} of field {col} is outside [0, 1]")
            values.append(value)
        if key in out:
            raise InputFileError(where, f"{key} is annotated twice")
        out[key] = tuple(values[i] for i in wanted)
    if not out:
        raise InputFileError(display, "no annotations in the file")
    return out


def pair_webcam(nights: Sequence[str], days: Sequence[str], rng: np.random.Generator, per_night: int, cap: int) -> list[tuple[str, str]]:
    """The pairs of one webcam: each night image with up to ``per_night`` distinct day images
    (without replacement), then at most ``cap`` pairs (a random subset, original order kept)."""
    pairs = []
    days = sorted(days)
    for night in sorted(nights):
        k = min(per_night, len(days))
        for j in sorted(rng.choice(len(days), size=k, replace=False).tolist()):
            pairs.append((night, days[j]))
    if len(pairs) > cap:
        keep = sorted(rng.choice(len(pairs), size=cap, replace=False).tolist())
        pairs = [pairs[i] for i in keep]
    return pairs


def split_webcams(webcams: Sequence[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Webcam -> split (see the module docstring for the rule)."""
    cams = sorted(webcams)
    n = len(cams)

    def count(fraction: float) -> int:
        k = round(n * fraction)
        return max(k, 1) if fraction > 0 and n >= 3 else k

    n_test, n_val = count(test_fraction), count(val_fraction)
    if n_test + n_val >= n and n > 0:
        raise ConfigError(f"{n} webcams give pairs: too few for {n_test} test and {n_val} val webcams and some train")
    perm = job_rng(seed, "night2day", "webcams").permutation(n)
    return {cams[int(i)]: "test" if r < n_test else ("val" if r < n_test + n_val else "train") for r, i in enumerate(perm)}


class Night2DayBuilder(DatasetBuilder):
    """A = night image, B = day image of the same webcam (Transient Attributes)."""

    name = "night2day"
    version = "1"
    summary = "Transient Attributes night/day pairs of one webcam, split by webcam: A = night, B = day."
    source_layout = (
        "aligned_images.tar (imageAlignedLD/<webcam>/<img>.jpg) and annotations.tar "
        "(annotations/annotations.tsv, annotations/attributes.txt), or their extracted folders"
    )
    Options = Night2DayOptions
    downloads = {
        "original": (RemoteFile(TRANSATTR_BASE, "aligned_images.tar"), RemoteFile(TRANSATTR_BASE, "annotations.tar")),
        "prebuilt": (RemoteFile(PIX2PIX_BASE, "night2day.tar.gz"),),
    }

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: Night2DayOptions = self.options
        for flag, value in (("--days-per-night", opts.days_per_night), ("--max-pairs-per-webcam", opts.max_pairs_per_webcam)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        for flag, value in (("--val-fraction", opts.val_fraction), ("--test-fraction", opts.test_fraction)):
            if not 0 <= value < 1:
                raise ConfigError(f"{flag} must be in [0, 1), got {value}")
        thresholds = {"--night-min": opts.night_min, "--night-daylight-max": opts.night_daylight_max, "--day-min": opts.day_min, "--day-night-max": opts.day_night_max}
        for flag, value in thresholds.items():
            if not 0 <= value <= 1:
                raise ConfigError(f"{flag} must be in [0, 1] (attribute values), got {value}")
        sources = _expand(sources)
        self.trees = [open_source(s) for s in sources]
        tree, tsv = _find(self.trees, TSV_NAME, "expected annotations.tar or its extracted annotations/ folder", sources)
        attr_file = posixpath.join(posixpath.dirname(tsv), ATTRIBUTES_NAME)
        if not tree.exists(attr_file):
            raise InputFileError(tree.display(attr_file), "missing: attributes.txt gives the column order of annotations.tsv")
        attributes = read_attributes(tree.read_bytes(attr_file), tree.display(attr_file))
        i_night, i_day = attributes.index("night"), attributes.index("daylight")
        table = read_annotations(tree.read_bytes(tsv), tree.display(tsv), len(attributes), (i_night, i_day))

        images = _image_index(self.trees)
        if not images:
            raise InputFileError(", ".join(map(str, sources)), "no imageAlignedLD/<webcam>/<image> files (expected aligned_images.tar or its extracted folder)")
        self.missing = sorted(k for k in table if k not in images)
        if self.missing and not build.skip_bad:
            raise InputFileError(
                tree.display(tsv), f"annotated image {self.missing[0]} is not in imageAlignedLD ({len(self.missing)} missing; --skip-bad ignores them)"
            )

        nights: dict[str, list[str]] = {}
        days: dict[str, list[str]] = {}
        for key, (night, day) in table.items():
            if key not in images:
                continue
            cam = key.split("/")[0]
            if night >= opts.night_min and day <= opts.night_daylight_max:
                nights.setdefault(cam, []).append(key)
            elif day >= opts.day_min and night <= opts.day_night_max:
                days.setdefault(cam, []).append(key)
        pairs = {}
        for cam in sorted(set(nights) & set(days)):
            rng = job_rng(build.seed, "night2day", cam)
            pairs[cam] = pair_webcam(nights[cam], days[cam], rng, opts.days_per_night, opts.max_pairs_per_webcam)
        if not pairs:
            raise InputFileError(tree.display(tsv), "no webcam has both a night and a day image under the thresholds")
        self.splits = split_webcams(list(pairs), build.seed, opts.val_fraction, opts.test_fraction)
        self.counts = {"night_images": sum(map(len, nights.values())), "day_images": sum(map(len, days.values()))}
        for cam in sorted(pairs, key=lambda c: (self.splits[c], c)):
            for night, day in pairs[cam]:
                name = f"{cam}_{posixpath.splitext(night.split('/')[1])[0]}_{posixpath.splitext(day.split('/')[1])[0]}"
                yield PairJob(self.splits[cam], name, (IMAGE_DIR + night, IMAGE_DIR + day), (images[night], images[day]))

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        night_name, day_name = job.payload  # (tree index, member name) each
        halves = []
        for i, name in (night_name, day_name):
            image = decode_image(self.trees[i].read_bytes(name), self.trees[i].display(name))
            h, w = image.shape[:2]
            interp = cv2.INTER_AREA if build.size < min(h, w) else cv2.INTER_CUBIC
            halves.append(cv2.resize(image, (build.size, build.size), interpolation=interp))
        return PairResult(halves[0], halves[1])

    def manifest_extras(self) -> dict:
        opts: Night2DayOptions = self.options
        webcams: dict[str, list[str]] = {}
        for cam, split in sorted(getattr(self, "splits", {}).items()):
            webcams.setdefault(split, []).append(cam)
        return {
            "direction": "AtoB",
            "a": "night image",
            "b": "day image of the same webcam",
            "pairing_rule": (
                f"ours: night = night >= {opts.night_min} and daylight <= {opts.night_daylight_max}; "
                f"day = daylight >= {opts.day_min} and night <= {opts.day_night_max}; each night image with up to "
                f"{opts.days_per_night} day images of its webcam (seeded), at most {opts.max_pairs_per_webcam} pairs per webcam"
            ),
            "webcams": webcams,
            **getattr(self, "counts", {}),
            "missing_images": getattr(self, "missing", []),
        }
