"""The dataset-builder contract.

A builder turns an original dataset into the aligned A|B format. It declares *what* pairs exist
(:meth:`DatasetBuilder.plan`, cheap, in the main process) and *how* to make one
(:meth:`DatasetBuilder.make_pair`, in worker processes); the shared runner
(:func:`p2ptools.buildkit.runner.run_build`) does the rest the same way for every builder:
parallel workers, a progress bar, atomic writes, resume after interruption, ``--skip-bad`` and the
manifest. See ``p2ptools_datasets/_template.py`` for a complete small example.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from p2ptools.cpus import default_workers
from p2ptools.options import BUILD_WORKERS, SEED, SIZE, Range, check_options
from p2ptools.pairs import Manifest


def _default_workers() -> int:
    return default_workers(8)


@dataclass(frozen=True)
class BuildOptions:
    """Options every builder accepts (``p2ptools make-dataset NAME --help`` lists them)."""

    size: int = field(default=256, metadata={"help": "Side of each half in pixels (builders that resize).", "range": SIZE})
    limit: int | None = field(default=None, metadata={"help": "At most this many pairs per split.", "range": Range(1)})
    seed: int = field(default=0, metadata={"help": "Seed for splits and any randomness (deterministic).", "range": SEED})
    workers: int = field(default_factory=_default_workers, metadata={"help": "Worker processes (default: min(8, cores available)).",
                                                                     "range": BUILD_WORKERS})
    format: str = field(default="jpg", metadata={"help": "Pair file format.", "choices": ("jpg", "png")})
    quality: int = field(default=95, metadata={"help": "JPEG quality.", "range": (1, 100)})
    overwrite: bool = field(default=False, metadata={"help": "Delete a previous build in OUT and start over."})
    skip_bad: bool = field(default=False, metadata={"help": "Skip bad items (listed in the manifest) instead of stopping."})

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class PairJob:
    """One pair to make: where it goes, what it came from, and builder data to make it.

    ``payload`` must be picklable and small (paths, indices, parameters), never image data.
    """

    split: str
    name: str
    sources: tuple[str, ...]
    payload: Any = None


@dataclass
class PairResult:
    """The made pair: A and B of equal shape (H, W, 3) uint8, plus optional extra images.

    ``extras`` maps a kind (``"labels"``, ``"masks"``) to a (H, W) or (H, W, 3) uint8 image (or an
    (H, W) uint16 id map), written losslessly to ``<out>/<kind>/<split>/<name>.png``. ``bgr=True`` says A and B are in OpenCV's
    BGR order (builders that only decode and re-encode skip two color conversions per pair).
    """

    a: np.ndarray
    b: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    bgr: bool = False


@dataclass(frozen=True)
class NoOptions:
    """Builders without options of their own use this."""


class DatasetBuilder(ABC):
    """Base class of dataset builders (entry-point group ``p2ptools.datasets``).

    Class attributes:
        name: registry name (the entry point's name).
        version: bumped when the output of the same source and options changes.
        summary: one line for ``p2ptools datasets``.
        source_layout: the expected source (archive names, folder layout), shown in help texts.
        Options: frozen dataclass of builder-specific options (defaults = paper protocol).
        needs_source: whether ``--source`` is required.
        default_format: the ``--format`` default on the command line (``"png"`` for builders
            whose halves are label maps that JPEG would blur).
        takes_source: whether ``--source`` (and ``--download``/``--prebuilt``) apply at all; False
            for builders that generate their data or read it from options of their own, whose
            ``make-dataset NAME --help`` then neither lists nor accepts them.
        uses_size: whether the builder resizes to ``--size``; False hides and refuses ``--size``
            (``combine`` keeps its images' sizes, or its own ``--resize``).
        parallelism: ``"processes"`` (default: worker processes, for Python-heavy work) or
            ``"threads"`` for builders whose ``make_pair`` is OpenCV/numpy calls that release the
            GIL (no fork, no pickling: faster for light per-pair work such as ``combine``).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    source_layout: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    needs_source: ClassVar[bool] = True
    takes_source: ClassVar[bool] = True
    uses_size: ClassVar[bool] = True
    default_format: ClassVar[str] = "jpg"
    parallelism: ClassVar[str] = "processes"

    @classmethod
    def build_defaults(cls) -> dict[str, Any]:
        """This builder's own defaults of :class:`BuildOptions` fields (field name -> value), where
        they differ from the dataclass's: what ``make-dataset NAME`` and ``datasets show NAME`` use."""
        return {"format": cls.default_format}

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterable[PairJob]:
        """Yield every pair of the dataset, split assigned, in a deterministic order.

        Raise :class:`p2ptools.errors.InputFileError` for a wrong source (missing folder, wrong
        archive). Open archives here and keep them on ``self``: workers receive a copy.
        """

    @abstractmethod
    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        """Make one pair (runs in a worker). Raise ``InputFileError`` for a bad item."""

    def manifest_extras(self) -> dict[str, Any]:
        """Builder-specific manifest data (class tables, split rules); called after :meth:`plan`."""
        return {}

    def build(self, sources: Sequence[Path], out: Path, build: BuildOptions, progress: bool = True) -> Manifest:
        """Build the dataset into ``out`` and return its manifest (see :func:`run_build`)."""
        from p2ptools.buildkit.runner import run_build

        return run_build(self, sources, out, build, progress=progress)


def job_rng(seed: int, *keys: str) -> np.random.Generator:
    """A random generator that depends only on the seed and the keys (e.g. split and name),
    so results do not depend on which worker makes which pair, or on resumption."""
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])
