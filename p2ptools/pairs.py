"""The aligned-pair dataset format, compatible with the datasets pix2pix users already have.

Layout::

    <root>/{train,val,test}/<name>.{jpg,png}     A on the left half, B on the right, equal halves
    <root>/manifest.json                          written by our builders (see :class:`Manifest`)
    <root>/<extra>/<split>/<name>.png             optional per-pair extras (label maps, hole masks)

Example:
    >>> import numpy as np
    >>> a, b = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    >>> int(split_pair(join_pair(a, b))[1].max())
    1
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from p2ptools.errors import InputFileError
from p2ptools.imageio import encode_image, is_image_name, read_image, read_json, sha256_file, write_bytes_atomic, write_text_atomic
from p2ptools.outputs import OutputKind

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"
FORMAT_ID = "p2ptools-aligned/1"


def _manifest_is_ours(folder: Path) -> bool:
    """A dataset built before ownership records: its manifest is a file holding our format key."""
    path = folder / MANIFEST_NAME
    try:
        return not path.is_symlink() and json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT_ID
    except (OSError, ValueError, AttributeError):
        return False


#: A dataset folder (``p2ptools.outputs``): its ownership record lists no files, the manifest does.
DATASET = OutputKind("dataset", (MANIFEST_NAME,), legacy=_manifest_is_ours)


def split_pair(image: np.ndarray, name: str = "<array>") -> tuple[np.ndarray, np.ndarray]:
    """Split an aligned image (H, 2W[, C]) into its A (left) and B (right) halves.

    Raises:
        InputFileError: odd width (the halves would differ).
    """
    if image.ndim not in (2, 3):
        raise InputFileError(name, f"expected an image array, got shape {image.shape}")
    width = image.shape[1]
    if width % 2:
        raise InputFileError(name, f"odd width {width}: an aligned pair needs two equal halves")
    half = width // 2
    return image[:, :half].copy(), image[:, half:].copy()


def join_pair(a: np.ndarray, b: np.ndarray, name: str = "<pair>") -> np.ndarray:
    """Concatenate A and B side by side; both must have the same shape (H, W[, C])."""
    if a.shape != b.shape:
        raise InputFileError(name, f"A is {a.shape[1]}x{a.shape[0]} but B is {b.shape[1]}x{b.shape[0]}")
    if a.dtype == b.dtype == np.uint8:
        return cv2.hconcat([a, b])  # the same copy as np.concatenate, without holding the GIL
    return np.concatenate([a, b], axis=1)


def read_pair(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an aligned pair file into RGB (A, B); EXIF orientation is ignored, as the reference (PIL) does."""
    return split_pair(read_image(path, exif_orientation=False), str(path))


def encode_pair(a: np.ndarray, b: np.ndarray, fmt: str, *, quality: int = 95, name: str = "<pair>", bgr: bool = False) -> bytes:
    """Encode the side-by-side image of A and B (``bgr``: the halves are in OpenCV's order)."""
    return encode_image(join_pair(a, b, name), fmt, quality=quality, bgr=bgr)


def write_pair(path: str | Path, a: np.ndarray, b: np.ndarray, *, quality: int = 95) -> str:
    """Write A|B atomically (temporary name, then rename); the format follows the suffix.

    Returns:
        sha256 hex digest of the written file.
    """
    path = Path(path)
    data = encode_pair(a, b, path.suffix, quality=quality, name=str(path))
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def iter_split(root: str | Path, split: str) -> Iterator[Path]:
    """Yield the image files of ``<root>/<split>`` in name order (temporary files skipped).

    ``root`` may also be a split folder itself when ``split`` is ``""``.
    """
    folder = Path(root) / split if split else Path(root)
    if not folder.is_dir():
        raise InputFileError(folder, "no such split folder")
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image_name(path.name) and not path.name.startswith(".tmp-"):
            yield path


def dataset_splits(root: str | Path) -> list[str]:
    """The split folders present under ``root``, in the order train, val, test."""
    root = Path(root)
    return [s for s in SPLITS if (root / s).is_dir()]


#: Splits a dataset is evaluated on, in order of preference (Cityscapes has no public test labels,
#: so its builder writes train and val only).
EVALUATION_SPLITS = ("test", "val")


def evaluation_split(root: str | Path) -> str:
    """The split ``translate`` and ``eval`` use when none is given: ``test`` when the dataset has
    one with images, else ``val``.

    Raises:
        InputFileError: ``root`` has neither (naming the splits it has).
    """
    root = Path(root)
    for split in EVALUATION_SPLITS:
        if (root / split).is_dir() and next(iter_split(root, split), None) is not None:
            return split
    have = dataset_splits(root)
    raise InputFileError(root, f"dataset has no test or val split to evaluate on (it has: {', '.join(have) or 'no split folders'}); "
                               "choose one with --split")


@dataclass
class PairRecord:
    """One pair of a manifest: where it is, where it came from, and its checksum."""

    split: str
    name: str
    file: str  # relative to the dataset root, posix separators
    sources: list[str]
    sha256: str
    extras: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> {"file", "sha256"}


@dataclass
class SkippedRecord:
    """A source item that was skipped with ``--skip-bad``, and why."""

    split: str
    name: str
    sources: list[str]
    error: str


@dataclass
class Manifest:
    """Contents of ``manifest.json``."""

    builder: dict[str, str]  # {"name", "version"}
    options: dict[str, Any]
    source: list[str]
    image_size: list[int] | None  # [height, width] of one half
    file_format: str
    pairs: list[PairRecord] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # builder-specific (class tables, ...)
    format: str = FORMAT_ID

    @property
    def counts(self) -> dict[str, int]:
        """Number of pairs per split."""
        out: dict[str, int] = {}
        for rec in self.pairs:
            out[rec.split] = out.get(rec.split, 0) + 1
        return out

    def to_json(self) -> str:
        """The manifest as JSON text: indented, with one line per pair and per skipped item (fast
        to write and to diff for datasets of 50,000 pairs)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("pairs", "skipped"):
                rows = ",\n".join("  " + json.dumps(vars(rec)) for rec in value)
                text = f"[\n{rows}\n ]" if rows else "[]"
            else:
                text = json.dumps(value, indent=1).replace("\n", "\n ")
            parts.append(f" {json.dumps(f.name)}: {text}")
        parts.append(f' "splits": {json.dumps(self.counts)}')
        return "{\n" + ",\n".join(parts) + "\n}\n"

    def write(self, root: str | Path) -> Path:
        """Write ``<root>/manifest.json`` atomically."""
        path = Path(root) / MANIFEST_NAME
        write_text_atomic(path, self.to_json())
        return path


def load_manifest(root: str | Path) -> Manifest:
    """Read ``<root>/manifest.json`` (``root`` may also be the file itself)."""
    path = Path(root)
    if path.is_dir():
        path = path / MANIFEST_NAME
    data = read_json(path, missing="no manifest.json (not built by p2ptools?)")
    if not isinstance(data, dict) or data.get("format") != FORMAT_ID:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputFileError(path, f"unknown manifest format {found!r}, expected {FORMAT_ID!r}")
    data.pop("splits", None)
    try:
        data["pairs"] = [PairRecord(**p) for p in data.get("pairs", [])]
        data["skipped"] = [SkippedRecord(**s) for s in data.get("skipped", [])]
        return Manifest(**data)
    except TypeError as exc:
        raise InputFileError(path, f"malformed manifest ({exc})") from None


def manifest_sha256(root: str | Path) -> str:
    """sha256 of a dataset's manifest file (recorded by runs to pin their data)."""
    return sha256_file(Path(root) / MANIFEST_NAME)


@dataclass
class VerifyReport:
    """Result of :func:`verify_dataset`; ``ok`` when nothing is missing, changed or unlisted."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unlisted)

    def problems(self) -> list[str]:
        return (
            [f"missing: {p}" for p in self.missing]
            + [f"changed (sha256 differs): {p}" for p in self.changed]
            + [f"not in manifest: {p}" for p in self.unlisted]
        )


def verify_dataset(root: str | Path) -> VerifyReport:
    """Check every file listed in the manifest against its sha256, and look for unlisted pairs."""
    root = Path(root)
    manifest = load_manifest(root)
    report = VerifyReport()
    listed: set[str] = set()
    files = [(r.file, r.sha256) for r in manifest.pairs]
    files += [(e["file"], e["sha256"]) for r in manifest.pairs for e in r.extras.values()]
    for rel, digest in files:
        listed.add(rel)
        report.checked += 1
        path = root / rel
        if not path.is_file():
            report.missing.append(rel)
        elif sha256_file(path) != digest:
            report.changed.append(rel)
    for split in dataset_splits(root):
        for path in iter_split(root, split):
            rel = path.relative_to(root).as_posix()
            if rel not in listed:
                report.unlisted.append(rel)
    return report
