"""The generic ``combine`` builder: pair two folders of A and B images by file stem."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from p2ptools.buildkit.contract import BuildOptions, DatasetBuilder, PairJob, PairResult
from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import is_image_name, read_image
from p2ptools.options import SIZE
from p2ptools.pairs import SPLITS


@dataclass(frozen=True)
class CombineOptions:
    """Options of :class:`CombineBuilder`."""

    source_a: Path | None = field(default=None, metadata={"help": "Folder of A images (split subfolders, or flat with --split)."})
    source_b: Path | None = field(default=None, metadata={"help": "Folder of B images, same layout and stems as A."})
    split: str | None = field(default=None, metadata={"help": "Treat the folders as flat and write this split.", "choices": SPLITS})
    resize: int | None = field(default=None, metadata={"help": "Resize both halves to NxN (else sizes must match).", "range": SIZE})


def _by_stem(folder: Path) -> dict[str, str]:
    """The image files of ``folder`` by stem (paths as strings: cheap to send to workers)."""
    found: dict[str, str] = {}
    with os.scandir(folder) as entries:  # file types come with the listing: no stat per file
        names = sorted(e.name for e in entries if is_image_name(e.name) and not e.name.startswith(".") and _is_file_or_broken(e))
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem in found:
            raise ConfigError(f"{folder}: two images with the stem {stem!r} ({Path(found[stem]).name}, {name})")
        found[stem] = os.path.join(folder, name)
    return found


def _is_file_or_broken(entry: os.DirEntry) -> bool:
    """A file, or an entry whose type cannot be read (a symbolic-link loop): that one becomes a bad
    item of its own, which --skip-bad skips and which otherwise stops the build naming it."""
    try:
        return entry.is_file()
    except OSError:
        return True


class CombineBuilder(DatasetBuilder):
    """Pair A and B images by file stem into the aligned format (like pix2pix's combine_A_and_B)."""

    name = "combine"
    version = "1"
    summary = "Pair two folders of A and B images by file stem (any paired data)."
    source_layout = "--source-a A/ --source-b B/, each with train/ val/ test/ subfolders (or flat, with --split)"
    Options = CombineOptions
    needs_source = False
    takes_source = False  # --source-a and --source-b
    uses_size = False  # the images keep their sizes, or take --resize N

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: CombineOptions = self.options
        if opts.source_a is None or opts.source_b is None:
            raise ConfigError("combine needs --source-a DIR and --source-b DIR")
        for folder in (opts.source_a, opts.source_b):
            if not Path(folder).is_dir():
                raise InputFileError(folder, "no such folder")
        if opts.split is not None:
            pairs = [(opts.split, Path(opts.source_a), Path(opts.source_b))]
        else:
            pairs = [(s, Path(opts.source_a) / s, Path(opts.source_b) / s) for s in SPLITS if (Path(opts.source_a) / s).is_dir()]
            if not pairs:
                raise InputFileError(opts.source_a, f"no split folders ({', '.join(SPLITS)}); use --split for a flat folder")
        for split, folder_a, folder_b in pairs:
            if not folder_b.is_dir():
                raise InputFileError(folder_b, f"missing: A has a {split!r} folder but B does not")
            a, b = _by_stem(folder_a), _by_stem(folder_b)
            for stem in sorted(set(a) | set(b)):
                sources = tuple(p for p in (a.get(stem), b.get(stem)) if p is not None)
                yield PairJob(split, stem, sources, (a.get(stem), b.get(stem)))

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        path_a, path_b = job.payload
        if path_a is None or path_b is None:
            present, other = (path_a, self.options.source_b) if path_b is None else (path_b, self.options.source_a)
            raise InputFileError(present, f"missing partner: no image with stem {job.name!r} in {other}")
        # Decode and re-encode in OpenCV's BGR order: no color conversion is needed in between.
        a, b = read_image(path_a, mode="bgr"), read_image(path_b, mode="bgr")
        size = self.options.resize
        if size is not None:
            a, b = _resize(a, size), _resize(b, size)
        elif a.shape != b.shape:
            raise InputFileError(
                path_b, f"size {b.shape[1]}x{b.shape[0]} differs from its partner {path_a} ({a.shape[1]}x{a.shape[0]}); use --resize N"
            )
        return PairResult(a, b, bgr=True)


def _resize(image, size: int):
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)
