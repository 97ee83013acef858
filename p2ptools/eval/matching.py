"""Match result images to their ground truth: label maps (for FCN and segmentation scores) and
photos (for color histograms and image metrics).

Results are the image files of a folder; a folder written by ``p2ptools translate`` from an aligned
dataset also has ``input/`` and ``target/`` (the ground-truth photos, used by default) and
``translate.json`` (naming the dataset, whose manifest links each pair to its source files).

Label sources:
    :class:`CityscapesLabels` -- ``ROOT/gtFine/<split>/<city>/<frame>_gtFine_labelIds.png`` at full
        resolution (never resized), label ids mapped to train ids through the class table; the
        frame name ``<city>_<seq:06d>_<frame:06d>`` is found in the result's file name or, through
        the manifest, in the names of the sources its pair was built from.
    :class:`LabelFolder` -- a folder of train-id PNGs (H, W) or color label PNGs (decoded through
        the class table), matched by file stem or frame name.
    :class:`ManifestLabels` -- the ``labels`` extra of an aligned dataset's pairs.

Photo sources: :class:`PhotoFolder` (``--real`` or a results ``target/`` folder, by stem or frame
name) and :class:`DatasetPhotos` (the target half of an aligned dataset's pairs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from p2ptools.errors import InputFileError
from p2ptools.imageio import is_image_name, read_image, read_json, to_rgb
from p2ptools.labels import IGNORE, ClassTable
from p2ptools.pairs import MANIFEST_NAME, Manifest, load_manifest, read_pair

#: ``<city>_<seq:06d>_<frame:06d>``, e.g. ``frankfurt_000000_000294``.
FRAME_RE = re.compile(r"(?<![A-Za-z0-9])([a-z]+)_(\d{6})_(\d{6})(?!\d)")
CITYSCAPES_SPLITS = ("val", "train", "test")


def frame_name(text: str) -> str | None:
    """The Cityscapes frame name in ``text`` (a file name or path), or None.

    Example:
        >>> frame_name("out/frankfurt_000000_000294_leftImg8bit.png")
        'frankfurt_000000_000294'
    """
    found = FRAME_RE.findall(Path(text).name) or FRAME_RE.findall(text)
    return "_".join(found[-1]) if found else None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p.name) and not p.name.startswith("."))


@dataclass(frozen=True)
class ResultSet:
    """The result images of a folder and what ``p2ptools translate`` wrote beside them."""

    folder: Path
    files: list[Path]
    inputs: Path | None = None  # folder of the input halves
    targets: Path | None = None  # folder of the ground-truth halves
    info: dict = field(default_factory=dict)  # translate.json

    @property
    def dataset(self) -> Path | None:
        root = self.info.get("dataset")
        return Path(root) if root else None


def find_results(folder: str | Path) -> ResultSet:
    """List the result images of ``folder`` (``input/`` and ``target/`` subfolders excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "results folder does not exist")
    files = _image_files(folder)
    if not files:
        raise InputFileError(folder, "no result images found")
    info: dict = {}
    if (folder / "translate.json").is_file():
        info = read_json(folder / "translate.json")
    subdir = lambda name: folder / name if (folder / name).is_dir() else None  # noqa: E731
    return ResultSet(folder, files, subdir("input"), subdir("target"), info)


class FrameIndex:
    """Finds a result's Cityscapes frame name: in its file name, else in its pair's manifest sources."""

    def __init__(self, manifest: Manifest | None = None) -> None:
        self.sources: dict[str, list[str]] = {}
        if manifest is not None:
            for rec in manifest.pairs:
                self.sources.setdefault(rec.name, list(rec.sources))

    def frame(self, result: Path) -> str | None:
        name = frame_name(result.name)
        if name:
            return name
        for source in self.sources.get(result.stem, []):
            name = frame_name(source)
            if name:
                return name
        return None


def read_train_ids(path: Path, classes: ClassTable) -> np.ndarray:
    """A label PNG -> (H, W) uint8 train ids: single-channel files hold train ids (or 255), color
    files are decoded to the nearest class color of ``classes``."""
    image = read_image(path, mode="unchanged")
    if image.dtype != np.uint8:
        raise InputFileError(path, f"label maps must be 8-bit, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        colors = to_rgb(image)
        return classes.decode_colors(colors)
    if image.ndim == 3:
        image = image[:, :, 0]
    values = np.unique(image)
    bad = values[(values >= classes.num_classes) & (values != IGNORE)]
    if bad.size:
        raise InputFileError(path, f"label values {bad[:8].tolist()} are not train ids (0..{classes.num_classes - 1} or {IGNORE} = ignore)")
    return image


class LabelSource:
    """Ground-truth train ids for a result file."""

    def labels(self, result: Path) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class CityscapesLabels(LabelSource):
    """``gtFine_labelIds`` of the result's frame at full resolution, mapped to train ids."""

    def __init__(self, root: str | Path, classes: ClassTable, frames: FrameIndex, split: str | None = None) -> None:
        root = Path(root)
        gt = root / "gtFine" if (root / "gtFine").is_dir() else root if root.name == "gtFine" else None
        if gt is None:
            raise InputFileError(root, "no gtFine folder: not a Cityscapes root")
        self.gt, self.classes, self.frames = gt, classes, frames
        self.splits = (split,) if split in CITYSCAPES_SPLITS else CITYSCAPES_SPLITS

    def path(self, result: Path) -> Path:
        frame = self.frames.frame(result)
        if frame is None:
            raise InputFileError(result, "no Cityscapes frame name (<city>_<seq>_<frame>) in the file name or its dataset manifest sources")
        city = frame.split("_")[0]
        for split in self.splits:
            path = self.gt / split / city / f"{frame}_gtFine_labelIds.png"
            if path.is_file():
                return path
        raise InputFileError(result, f"frame {frame} has no {frame}_gtFine_labelIds.png under {self.gt}/{{{','.join(self.splits)}}}/{city}")

    def labels(self, result: Path) -> np.ndarray:
        path = self.path(result)
        ids = read_image(path, mode="unchanged")
        if ids.ndim != 2:
            raise InputFileError(path, f"expected a single-channel labelIds image, got shape {ids.shape}")
        return self.classes.label_ids_to_train_ids(ids)

    def describe(self) -> str:
        return f"Cityscapes gtFine labelIds under {self.gt}"


class _Folder:
    """Image files of a folder indexed by stem and by frame name."""

    def __init__(self, folder: str | Path, what: str) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputFileError(self.folder, f"{what} folder does not exist")
        self.by_stem: dict[str, Path] = {}
        self.by_frame: dict[str, Path] = {}
        for path in _image_files(self.folder):
            self.by_stem.setdefault(path.stem, path)
            frame = frame_name(path.name)
            if frame:
                self.by_frame.setdefault(frame, path)
        self.what = what

    def find(self, result: Path, frames: FrameIndex | None = None) -> Path:
        path = self.by_stem.get(result.stem)
        if path is None:
            frame = frames.frame(result) if frames else frame_name(result.name)
            path = self.by_frame.get(frame) if frame else None
        if path is None:
            raise InputFileError(result, f"no {self.what} named {result.stem!r} (or with its frame name) in {self.folder}")
        return path


class LabelFolder(LabelSource):
    """Train-id or color label PNGs matched by stem or frame name."""

    def __init__(self, folder: str | Path, classes: ClassTable, frames: FrameIndex | None = None) -> None:
        self.files = _Folder(folder, "label map")
        self.classes, self.frames = classes, frames

    def labels(self, result: Path) -> np.ndarray:
        return read_train_ids(self.files.find(result, self.frames), self.classes)

    def describe(self) -> str:
        return f"label maps in {self.files.folder}"


class ManifestLabels(LabelSource):
    """The ``labels`` extra (train-id or color PNG) of the pair with the result's name."""

    def __init__(self, root: str | Path, classes: ClassTable, manifest: Manifest | None = None) -> None:
        self.root = Path(root)
        manifest = manifest or load_manifest(self.root)
        self.files = {rec.name: self.root / rec.extras["labels"]["file"] for rec in manifest.pairs if "labels" in rec.extras}
        if not self.files:
            raise InputFileError(self.root / MANIFEST_NAME, "the dataset has no label maps (no 'labels' extras)")
        self.classes = classes

    def labels(self, result: Path) -> np.ndarray:
        path = self.files.get(result.stem)
        if path is None:
            raise InputFileError(result, f"no pair named {result.stem!r} with a label map in {self.root / MANIFEST_NAME}")
        return read_train_ids(path, self.classes)

    def describe(self) -> str:
        return f"label maps of the dataset {self.root}"


class PhotoSource:
    """Ground-truth photos (and optionally inputs) for a result file."""

    def photo(self, result: Path) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class PhotoFolder(PhotoSource):
    """Photos of a folder (``--real``, or a results ``target/`` folder) by stem or frame name."""

    def __init__(self, folder: str | Path, frames: FrameIndex | None = None, what: str = "ground-truth photo") -> None:
        self.files = _Folder(folder, what)
        self.frames = frames

    def path(self, result: Path) -> Path:
        return self.files.find(result, self.frames)

    def photo(self, result: Path) -> np.ndarray:
        return read_image(self.path(result))

    def origin(self, result: Path) -> str:
        """The file the ground truth of ``result`` is read from (for content-hash cache keys)."""
        return str(self.path(result))

    def count(self) -> int:
        """How many photos the folder holds."""
        return len(self.files.by_stem)

    def has(self, result: Path) -> bool:
        try:
            self.path(result)
        except InputFileError:
            return False
        return True

    def describe(self) -> str:
        return f"photos in {self.files.folder}"


class DatasetPhotos(PhotoSource):
    """The target half (B for AtoB, A for BtoA) of ``<root>/<split>/<stem>.*``; ``input`` gives the other."""

    def __init__(self, root: str | Path, split: str, direction: str = "AtoB") -> None:
        self.root = Path(root)
        folder = self.root / split
        if not folder.is_dir():
            raise InputFileError(folder, f"dataset has no {split!r} split")
        self.files = _Folder(folder, "pair")
        self.direction = direction

    def _pair(self, result: Path) -> tuple[np.ndarray, np.ndarray]:
        a, b = read_pair(self.files.find(result))
        return (a, b) if self.direction == "AtoB" else (b, a)

    def photo(self, result: Path) -> np.ndarray:
        return self._pair(result)[1]

    def input(self, result: Path) -> np.ndarray:
        return self._pair(result)[0]

    def origin(self, result: Path) -> str:
        """The pair file and the half taken from it (``file#B`` for AtoB)."""
        return f"{self.files.find(result)}#{'B' if self.direction == 'AtoB' else 'A'}"

    def describe(self) -> str:
        return f"target halves ({self.direction}) of {self.files.folder}"
