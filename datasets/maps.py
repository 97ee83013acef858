"""The ``maps`` builder: aerial photo <-> map pairs.

Two sources:

1. The published pix2pix archive ``maps.tar.gz`` (or its folder): ``maps/{train,val}/<n>.jpg``,
   each 1200x600 with the aerial photo left and the map right. Each half is resized to
   ``--size``; the published split is kept (names ``<n>``), or with ``--resplit`` the images of
   both splits are shuffled with the seed and ``--val-fraction`` of them go to val (names
   ``<split>_<n>``, since both published splits number from 1).
2. Two folders (or archives) of tiles, ``--aerial DIR --map DIR``, whose names carry the tile
   centre's latitude and longitude in decimal degrees: ``<lat>_<lon>.<ext>`` (e.g.
   ``40.712800_-74.006000.png``; anything after a further ``_`` is ignored), matched by stem between
   the two folders. Following the paper's protocol, tiles are split by latitude so that no training
   area appears in the held-out split: tiles south of ``split_latitude - buffer`` go to train, tiles
   north of ``split_latitude + buffer`` to ``--holdout-split`` (val), and tiles inside the buffer band
   are dropped and counted in the manifest. Defaults (ours, the paper gives no numbers): the split
   latitude is the median tile latitude, the buffer 0.01 degrees (about 1.1 km) on each side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, open_source, open_sources
from p2ptools.download import PIX2PIX_BASE, RemoteFile
from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import decode_image, is_image_name
from p2ptools.options import Range
from p2ptools.pairs import split_pair

_PUBLISHED_RE = re.compile(r"(?:^|/)(train|val|test)/([^/]+)\.(jpg|jpeg|png)$", re.IGNORECASE)
_TILE_RE = re.compile(r"^(-?\d+(?:\.\d+)?)_(-?\d+(?:\.\d+)?)(?:_.*)?$")


@dataclass(frozen=True)
class MapsOptions:
    """Options of :class:`MapsBuilder`."""

    resplit: bool = field(default=False, metadata={"help": "Published archive: pool train and val and split again with the seed."})
    val_fraction: float = field(default=0.5, metadata={"range": Range(0, 1, low_open=True, high_open=True), "help": "With --resplit: fraction of images put in val/."})
    aerial: Path | None = field(default=None, metadata={"help": "Tile mode: folder or archive of aerial tiles named <lat>_<lon>.<ext>."})
    map: Path | None = field(default=None, metadata={"help": "Tile mode: folder or archive of map tiles with the same names."})
    split_latitude: float | None = field(default=None, metadata={"range": (-90, 90), "help": "Tile mode: latitude dividing train (south) from held-out (north); default the median."})
    buffer: float = field(default=0.01, metadata={"range": (0, 90), "help": "Tile mode: degrees of latitude dropped on each side of the split latitude."})
    holdout_split: str = field(default="val", metadata={"help": "Tile mode: split of the tiles north of the band.", "choices": ("val", "test")})


def resize_half(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3): area filter when shrinking, bicubic when enlarging."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if size <= min(h, w) else cv2.INTER_CUBIC)


def parse_tile_name(name: str) -> tuple[float, float] | None:
    """``40.7128_-74.006.png`` -> (40.7128, -74.006); None when the stem carries no coordinates."""
    m = _TILE_RE.match(PurePosixPath(name).stem)
    if m is None:
        return None
    lat, lon = float(m.group(1)), float(m.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


class MapsBuilder(DatasetBuilder):
    """Maps: from the published archive, or from coordinate-named tiles split by latitude."""

    name = "maps"
    version = "1"
    summary = "Maps: A = aerial photo, B = map; from maps.tar.gz, or from <lat>_<lon> tiles split by latitude with a buffer."
    source_layout = (
        "maps.tar.gz or its folder (maps/{train,val}/<n>.jpg, 1200x600 aerial|map); "
        "or --aerial DIR --map DIR of tiles named <lat>_<lon>.<ext> (no --source)"
    )
    Options = MapsOptions
    needs_source = False
    downloads = {
        "original": (RemoteFile(PIX2PIX_BASE, "maps.tar.gz"),),
        "prebuilt": (RemoteFile(PIX2PIX_BASE, "maps.tar.gz"),),
    }

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: MapsOptions = self.options
        tiles = opts.aerial is not None or opts.map is not None
        if tiles and sources:
            raise ConfigError("maps: give either --source (the published archive) or --aerial and --map (tiles), not both")
        if tiles:
            if opts.aerial is None or opts.map is None:
                raise ConfigError("maps tile mode needs both --aerial DIR and --map DIR")
            return self._plan_tiles(build)
        if not sources:
            raise ConfigError(f"maps needs --source or --aerial/--map: {self.source_layout}")
        if not 0.0 < opts.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {opts.val_fraction}")
        return self._plan_published(sources, build)

    # -- the published archive ------------------------------------------------------------------
    def _plan_published(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        self.mode = "published"
        self.tree = open_sources(sources)
        found = []
        for n in self.tree.names():
            if (m := _PUBLISHED_RE.search(n)) and not PurePosixPath(n).name.startswith("."):
                found.append((m.group(1), m.group(2), n))
        if not found:
            raise InputFileError(", ".join(map(str, sources)), "no {train,val}/<n>.jpg images: expected the published maps.tar.gz or its folder")
        order = {"train": 0, "val": 1, "test": 2}
        found.sort(key=lambda f: (order[f[0]], _numeric(f[1])))
        if self.options.resplit:
            rng = np.random.default_rng(build.seed)
            perm = rng.permutation(len(found))
            n_val = round(len(found) * self.options.val_fraction)
            val = set(perm[:n_val].tolist())
            jobs = [PairJob("val" if i in val else "train", f"{s}_{stem}", (n,), n) for i, (s, stem, n) in enumerate(found)]
            jobs.sort(key=lambda j: (order[j.split], j.name))
            yield from jobs
        else:
            for split, stem, n in found:
                yield PairJob(split, stem, (n,), n)

    # -- coordinate-named tiles ------------------------------------------------------------------
    def _plan_tiles(self, build: BuildOptions) -> Iterator[PairJob]:
        opts: MapsOptions = self.options
        self.mode = "tiles"
        if opts.buffer < 0:
            raise ConfigError(f"--buffer must be >= 0 degrees, got {opts.buffer}")
        self.aerial_tree, self.map_tree = open_source(opts.aerial), open_source(opts.map)
        aerial = self._index(self.aerial_tree)
        maps = self._index(self.map_tree)
        stems = sorted(set(aerial) | set(maps))
        if not stems:
            raise InputFileError(opts.aerial, "no tiles named <lat>_<lon>.<ext>")
        coords = {s: parse_tile_name(s) for s in stems}
        lats = np.array([c[0] for c in coords.values()])
        self.split_latitude = float(np.median(lats)) if opts.split_latitude is None else float(opts.split_latitude)
        lo, hi = self.split_latitude - opts.buffer, self.split_latitude + opts.buffer
        self.dropped = 0
        jobs = []
        for stem in stems:
            lat = coords[stem][0]
            if lo <= lat <= hi:
                self.dropped += 1
                continue
            split = "train" if lat < lo else opts.holdout_split
            a, m = aerial.get(stem), maps.get(stem)
            srcs = tuple(x for x in (a and self.aerial_tree.display(a), m and self.map_tree.display(m)) if x)
            jobs.append(PairJob(split, stem, srcs, (a, m)))
        self.tile_counts = {"train": sum(j.split == "train" for j in jobs), opts.holdout_split: sum(j.split != "train" for j in jobs)}
        order = {"train": 0, "val": 1, "test": 2}
        yield from sorted(jobs, key=lambda j: (order[j.split], j.name))

    def _index(self, tree) -> dict[str, str]:
        found: dict[str, str] = {}
        for n in tree.names():
            base = PurePosixPath(n).name
            if base.startswith(".") or not is_image_name(base):
                continue
            stem = PurePosixPath(n).stem
            if parse_tile_name(n) is None:
                raise InputFileError(tree.display(n), "tile name carries no latitude and longitude (expected <lat>_<lon>.<ext>, e.g. 40.7128_-74.006.png)")
            if stem in found:
                raise InputFileError(tree.display(n), f"two tiles with the stem {stem!r} ({found[stem]})")
            found[stem] = n
        return found

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        if self.mode == "published":
            # an aligned pair: its stored layout (EXIF orientation ignored, as the reference reads it)
            image = decode_image(self.tree.read_bytes(job.payload), self.tree.display(job.payload), exif_orientation=False)
            a, b = split_pair(image, self.tree.display(job.payload))
            return PairResult(resize_half(a, build.size), resize_half(b, build.size))
        a_name, m_name = job.payload
        if a_name is None:
            raise InputFileError(self.map_tree.display(m_name), f"map tile without its aerial tile: no {job.name}.* in {self.options.aerial}")
        if m_name is None:
            raise InputFileError(self.aerial_tree.display(a_name), f"aerial tile without its map tile: no {job.name}.* in {self.options.map}")
        a = decode_image(self.aerial_tree.read_bytes(a_name), self.aerial_tree.display(a_name))
        b = decode_image(self.map_tree.read_bytes(m_name), self.map_tree.display(m_name))
        return PairResult(resize_half(a, build.size), resize_half(b, build.size))

    def manifest_extras(self) -> dict[str, Any]:
        if getattr(self, "mode", None) == "tiles":
            return {
                "mode": "tiles",
                "split_latitude": self.split_latitude,
                "buffer_degrees": self.options.buffer,
                "rule": "train: lat < split - buffer; held out: lat > split + buffer; tiles in the band dropped",
                "dropped_in_buffer": self.dropped,
                "tiles": self.tile_counts,
            }
        return {"mode": "published", "resplit": self.options.resplit, "val_fraction": self.options.val_fraction if self.options.resplit else None}


def _numeric(stem: str) -> tuple[int, str]:
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)
