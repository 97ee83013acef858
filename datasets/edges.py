"""``edges2shoes`` and ``edges2handbags``: A = a line drawing of the photo's edges, B = the photo.

Sources (GUIDE section 7):

- edges2shoes: UT-Zappos50K ``ut-zap50k-images-square.zip`` (or its extracted folder), images at
  ``ut-zap50k-images-square/<Category>/<Subcategory>/<Brand>/<CID>.<PID>.jpg`` (names with spaces,
  folder names ending in "."). Output names are built from the relative path (safe characters only,
  unique); the manifest keeps the source name.
- edges2handbags: iGAN's ``handbag_64.zip`` / ``handbag_128.zip`` (an HDF5 file inside, dataset
  ``imgs`` of shape (N, W, W, 3) uint8 RGB; extracted once into the cache, since HDF5 needs random
  access), the ``.hdf5`` itself, or any folder / archive of photos.

Edges (``--edges``): ``hed`` (default; pix2pix's: our PyTorch HED on ``--hed-weights``, then the
``PostprocessHED`` chain of :func:`p2ptools.edges.postprocess.postprocess_hed`), ``canny`` or ``sobel`` (no
weights). ``--val-count`` images (200, at most half) go to val with the seed, the rest to train.

How HED runs: the network is heavy (130 GFLOP per 136x136 image: the 128-pixel reflection
padding makes it 392x392, and conv1_1 pads 35 more) and wants big batches on a GPU, so it does not
run in the forked workers. :meth:`plan` runs a batched pre-pass in the main process (CUDA when
present, else all CPU threads) over the pairs of this build, and stores each probability map in a
content-addressed cache (``$P2PTOOLS_CACHE/hed/<weights sha256>/<ab>/<image sha256>.png``, a 16-bit
PNG at the source resolution; the cache defaults to ``~/.cache/p2ptools`` and may be deleted);
the workers then do the cheap per-image work in parallel (decode, post-process, resize, encode).
Because the maps are cached by content, a build resumed after an interruption (even SIGKILL), a
rebuild at another ``--size`` or threshold, and a second dataset with the same photos recompute
nothing; every pair, resumed or not, is made from the same cached map, so results are identical.
Measured on this 2-core machine (shared, loaded), full-width HED on 136x136 images: 4.2 s/image in
the main process (2 torch threads, batch 4) against 3.7 s/image in two 1-thread forked workers, so
on a CPU the pre-pass costs about what per-worker HED would, and on a GPU it batches (per-worker
HED would need one CUDA context per worker and run batches of one).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import posixpath
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, job_rng, open_sources
from p2ptools.buildkit.sources import is_archive
from p2ptools.edges.postprocess import HED_MIN_COMPONENT, HED_THRESHOLD, canny_edges, postprocess_hed, sobel_edges
from p2ptools.errors import ConfigError, InputFileError, P2PError
from p2ptools.imageio import decode_image, is_image_name, write_bytes_atomic
from p2ptools.options import Range

EDGE_METHODS = ("hed", "canny", "sobel")
HDF5_SUFFIXES = (".hdf5", ".h5")
ZAPPOS_ROOT = "ut-zap50k-images-square"


@dataclass(frozen=True)
class EdgesOptions:
    """Options of the edges2shoes / edges2handbags builders."""

    edges: str = field(default="hed", metadata={"help": "Edge detector (hed = pix2pix's).", "choices": EDGE_METHODS})
    hed_weights: Path | None = field(
        default=None, metadata={"help": "HED weights: hed_pretrained_bsds.caffemodel or a converted .safetensors (for --edges hed)."}
    )
    device: str = field(default="auto", metadata={"help": "Where HED runs: auto (CUDA when present), cpu, cuda, cuda:N."})
    hed_batch_size: int = field(default=16, metadata={"range": (1, 1024), "help": "Images per HED forward pass on a GPU (CPU: at most 4)."})
    val_count: int = field(default=200, metadata={"range": Range(0), "help": "Images put in val/ with the seed (at most half); the rest go to train/."})
    threshold: float = field(default=HED_THRESHOLD, metadata={"range": Range(0, 1, low_open=True, high_open=True), "default_help": "25/255",
                                                                "help": "Edge threshold after NMS (pix2pix: 25/255; hed and sobel)."})
    min_component: int = field(default=HED_MIN_COMPONENT, metadata={"range": Range(0), "help": "Remove edge pieces under this many pixels (hed and sobel)."})


def _missing_weights_message(name: str) -> str:
    return (
        f"{name} --edges hed (the default) needs the HED weights: pass --hed-weights PATH "
        "(hed_pretrained_bsds.caffemodel, or the .safetensors that `p2ptools hed convert` makes of it), "
        "or use --edges canny or --edges sobel, which need no weights"
    )


def _safe_part(text: str) -> str:
    """One path component as safe characters: runs of anything but letters, digits, '-' -> '_'."""
    return re.sub(r"[^A-Za-z0-9\-]+", "_", text).strip("_-") or "x"


def safe_names(relative: Sequence[str]) -> dict[str, str]:
    """Relative source path -> unique output name made of safe characters.

    Folders are joined with ``-`` (``Boots/Mid-Calf/Dr. Martens/7965307.5291.jpg`` ->
    ``Boots-Mid-Calf-Dr_Martens-7965307.5291``); the file stem keeps its dots. Names that would
    collide get ``-`` + 8 hex digits of their source path's sha1.
    """
    out: dict[str, str] = {}
    for rel in relative:
        parts = rel.split("/")
        stem = posixpath.splitext(parts[-1])[0]
        stem = ".".join(_safe_part(p) for p in stem.split(".") if p.strip()) or "x"
        out[rel] = "-".join([_safe_part(p) for p in parts[:-1]] + [stem])
    counts: dict[str, int] = {}
    for name in out.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1  # case-insensitive file systems too
    for rel, name in out.items():
        if counts[name.lower()] > 1:
            out[rel] = f"{name}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
    return out


def _list_images(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        parts = name.split("/")
        if is_image_name(name) and not any(p.startswith(".") for p in parts) and "__MACOSX" not in parts:
            out.append(name)
    return out


def _cache_base() -> Path:
    return Path(os.environ.get("P2PTOOLS_CACHE", Path.home() / ".cache" / "p2ptools"))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resize_photo(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


# ------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class _Item:
    """One photo: where it comes from (picklable) and how it is named."""

    name: str  # output name
    source: str  # source name for the manifest
    kind: str  # "tree" or "h5"
    ref: Any  # tree member name, or (hdf5 path, index)


class _Reader:
    """Reads items' photos; reopens archives and HDF5 files once per process (workers are forked)."""

    def __init__(self, tree=None) -> None:
        self.tree = tree
        self.pid = os.getpid()
        self.h5: dict[str, Any] = {}

    def _fresh(self) -> None:
        if os.getpid() != self.pid:  # a forked worker: its own archive handle, its own HDF5 handles
            # a pickle round trip drops every open archive handle, nested ones (MultiSource) included
            self.tree = pickle.loads(pickle.dumps(self.tree)) if self.tree is not None else None
            self.h5 = {}
            self.pid = os.getpid()

    def load(self, item: _Item, needed=lambda key: True) -> tuple[np.ndarray | None, str, str]:
        """(RGB photo, display name, content key) of an item; the photo is decoded only when
        ``needed(key)`` (else None)."""
        self._fresh()
        if item.kind == "tree":
            data = self.tree.read_bytes(item.ref)
            display, key = self.tree.display(item.ref), hashlib.sha256(data).hexdigest()
            return (decode_image(data, display) if needed(key) else None), display, key
        path, index = item.ref
        image = _h5_image(self._h5(path), index, path)
        digest = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()
        return image, item.source, digest

    def _h5(self, path: str):
        handle = self.h5.get(path)
        if handle is None:
            import h5py

            handle = self.h5[path] = h5py.File(path, "r")
        return handle["imgs"]

    def close(self) -> None:
        for handle in self.h5.values():
            handle.close()
        self.h5 = {}


def _h5_image(dataset, index: int, path: str) -> np.ndarray:
    image = np.asarray(dataset[index])
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:  # channel-first variant
        image = image.transpose(1, 2, 0)
    return np.ascontiguousarray(image)


def _check_h5(path: Path, display: str) -> int:
    """Number of images in an iGAN HDF5 file; InputFileError for anything else."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "imgs" not in fh:
                raise InputFileError(display, f"no dataset 'imgs' (found: {', '.join(sorted(fh.keys())) or 'nothing'})")
            ds = fh["imgs"]
            shape = tuple(ds.shape)
            ok = len(shape) == 4 and (shape[3] == 3 or shape[1] == 3)
            if not ok or ds.dtype != np.uint8:
                raise InputFileError(display, f"dataset 'imgs' has shape {shape} and dtype {ds.dtype}; expected (N, W, W, 3) uint8 RGB")
            return int(shape[0])
    except OSError as exc:
        raise InputFileError(display, f"not a readable HDF5 file ({exc})") from None


def _extract_h5_member(archive: Path, member: str) -> Path:
    """Extract an HDF5 member of a zip once into the cache (atomically) and return its path."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{member}".encode()).hexdigest()[:16]
    target = _cache_base() / "hdf5" / f"{archive.name}-{key}" / posixpath.basename(member)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 22):
                dst.write(block)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise InputFileError(f"{archive}:{member}", f"cannot extract ({exc})") from None
    return target


# ----------------------------------------------------------------------------------- builders


class _EdgesBuilder(DatasetBuilder):
    """Shared plan / make_pair of the two edges builders (subclasses list the photos)."""

    Options = EdgesOptions

    def _items(self, sources: Sequence[Path]) -> tuple[list[_Item], _Reader]:
        raise NotImplementedError

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: EdgesOptions = self.options
        if opts.edges not in EDGE_METHODS:
            raise ConfigError(f"--edges must be one of {', '.join(EDGE_METHODS)}, got {opts.edges!r}")
        if opts.val_count < 0 or opts.hed_batch_size < 1 or opts.min_component < 0:
            raise ConfigError("--val-count and --min-component must be >= 0 and --hed-batch-size >= 1")
        weights_sha = None
        if opts.edges == "hed":
            if opts.hed_weights is None:
                raise ConfigError(_missing_weights_message(self.name))
            weights = Path(opts.hed_weights)
            if not weights.is_file():
                raise InputFileError(weights, "no such file (--hed-weights: hed_pretrained_bsds.caffemodel or a converted .safetensors)")
            weights_sha = _file_sha256(weights)
        items, self._reader = self._items(sources)
        if not items:
            raise InputFileError(sources[0], f"no images found; expected {self.source_layout}")
        ordered = sorted(items, key=lambda it: it.name)
        n_val = min(opts.val_count, len(ordered) // 2)
        perm = job_rng(build.seed, self.name, "val").permutation(len(ordered))
        val = {int(i) for i in perm[:n_val]}
        jobs = []
        for split in ("val", "train"):
            chosen = [it for i, it in enumerate(ordered) if (i in val) == (split == "val")]
            if build.limit is not None:
                chosen = chosen[: build.limit]  # the runner's --limit rule, applied here so HED runs only on these
            jobs += [PairJob(split, it.name, (it.source,), it) for it in chosen]
        self._split_info = {"val": n_val, "train": len(ordered) - n_val}
        self._hed_dir = None
        if weights_sha is not None:
            self._hed_dir = str(_cache_base() / "hed" / weights_sha[:32])
            self._weights_sha = weights_sha
            self._hed_prepass([job.payload for job in jobs], Path(opts.hed_weights))
        self._reader.close()
        yield from jobs

    # -- HED pre-pass (main process) ---------------------------------------------------------

    def _map_path(self, key: str) -> Path:
        return Path(self._hed_dir) / key[:2] / f"{key}.png"

    def _hed_prepass(self, items: list[_Item], weights: Path) -> None:
        """Compute the missing HED maps of ``items`` in batches and cache them."""
        from p2ptools.edges.hed import detect_edges, load_hed, resolve_device
        from p2ptools.progress import make_progress

        opts: EdgesOptions = self.options
        device = resolve_device(opts.device)
        # On a CPU a batch only costs memory (a 136x136 image is 392x392 after padding: ~0.2 GB of
        # activations per conv layer and image), on a GPU it is what keeps the device busy.
        batch_size = opts.hed_batch_size if device.type == "cuda" else min(opts.hed_batch_size, 4)
        net = None
        buffer: list[tuple[str, np.ndarray]] = []

        def flush() -> None:
            maps = detect_edges([img for _, img in buffer], net, device=device, batch_size=batch_size)
            for (key, _), prob in zip(buffer, maps):
                q = np.clip(np.rint(prob * 65535.0), 0, 65535).astype(np.uint16)
                ok, png = cv2.imencode(".png", q)
                if not ok:
                    raise P2PError(f"cannot encode the HED map of {key} as a 16-bit PNG")
                write_bytes_atomic(self._map_path(key), png.tobytes())
            buffer.clear()

        with make_progress(True) as bar:
            task = bar.add_task(f"HED edges ({device.type})", total=len(items))
            queued: set[str] = set()

            def needed(key: str) -> bool:
                return key not in queued and not self._map_path(key).exists()

            for item in items:
                try:
                    image, _, key = self._reader.load(item, needed)
                except P2PError:
                    bar.advance(task)  # a bad photo: make_pair reports it (or --skip-bad records it)
                    continue
                if needed(key):
                    if net is None:
                        net = load_hed(weights)
                    buffer.append((key, image))
                    queued.add(key)
                    if len(buffer) >= 4 * batch_size:
                        flush()
                bar.advance(task)
            if buffer:
                flush()

    # -- one pair (workers) ------------------------------------------------------------------

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        opts: EdgesOptions = self.options
        photo, display, key = self._reader.load(job.payload)
        if opts.edges == "hed":
            path = self._map_path(key)
            data = path.read_bytes() if path.exists() else b""
            q = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
            if q is None or q.dtype != np.uint16 or q.shape != photo.shape[:2]:
                raise P2PError(f"{path}: cached HED map of {display} is missing or damaged; rerun the command to recompute it")
            lines = postprocess_hed(q.astype(np.float32) / 65535.0, build.size, opts.threshold, opts.min_component)
        elif opts.edges == "canny":
            lines = canny_edges(photo, build.size)
        else:
            lines = sobel_edges(photo, build.size, opts.threshold, opts.min_component)
        return PairResult(np.repeat(lines[:, :, None], 3, axis=2), _resize_photo(photo, build.size))

    def manifest_extras(self) -> dict[str, Any]:
        opts: EdgesOptions = self.options
        extras: dict[str, Any] = {
            "edges": opts.edges,
            "split_rule": "val: --val-count images (at most half) drawn with the seed; the rest train",
            "split_sizes_before_limit": getattr(self, "_split_info", {}),
        }
        if opts.edges == "hed":
            extras["hed"] = {
                "weights": Path(opts.hed_weights).name if opts.hed_weights else None,
                "weights_sha256": getattr(self, "_weights_sha", None),
                "preprocess": "reflect-pad 128, RGB->BGR, minus (104.00698793, 116.66876762, 122.67891434); sigmoid-fuse",
                "postprocess": {"resize": "bicubic (imresize)", "nms": {"r": 1, "s": 5, "m": 1.01},
                                "threshold": opts.threshold, "thin": True, "min_component": opts.min_component},
            }  # fmt: skip
        return extras


class Edges2ShoesBuilder(_EdgesBuilder):
    """edges2shoes from UT-Zappos50K: A = edges, B = shoe photo."""

    name = "edges2shoes"
    version = "1"
    summary = "UT-Zappos50K shoes: A = HED (or canny/sobel) edges, B = photo; 200 to val."
    source_layout = (
        "ut-zap50k-images-square.zip or its folder: "
        "ut-zap50k-images-square/<Category>/<Subcategory>/<Brand>/<CID>.<PID>.jpg (50,025 images, 136x136)"
    )

    def _items(self, sources: Sequence[Path]) -> tuple[list[_Item], _Reader]:
        tree = open_sources(sources)
        names = _list_images(tree.names())
        rel = {}
        for name in names:
            parts = name.split("/")
            if parts[0].startswith("ut-zap50k-images") and len(parts) > 1:
                parts = parts[1:]
            rel[name] = "/".join(parts)
        out = safe_names(list(rel.values()))
        return [_Item(out[rel[n]], n, "tree", n) for n in names], _Reader(tree)


class Edges2HandbagsBuilder(_EdgesBuilder):
    """edges2handbags from iGAN's handbag HDF5 (or any photo folder): A = edges, B = photo."""

    name = "edges2handbags"
    version = "1"
    summary = "iGAN handbags (HDF5) or any photos: A = HED (or canny/sobel) edges, B = photo; 200 to val."
    source_layout = (
        "handbag_64.zip / handbag_128.zip (an .hdf5 inside with dataset 'imgs' (N, W, W, 3) uint8 RGB), "
        "the .hdf5 file itself, or a folder / archive of photos"
    )

    def _items(self, sources: Sequence[Path]) -> tuple[list[_Item], _Reader]:
        h5_files: list[tuple[Path, str]] = []
        photo_sources: list[Path] = []
        for src in map(Path, sources):
            if src.is_file() and src.name.lower().endswith(HDF5_SUFFIXES):
                h5_files.append((src, str(src)))
            elif src.is_file() and src.name.lower().endswith(".zip"):
                try:
                    with zipfile.ZipFile(src) as zf:
                        members = [m for m in zf.namelist() if m.lower().endswith(HDF5_SUFFIXES) and "__MACOSX" not in m]
                except zipfile.BadZipFile:
                    raise InputFileError(src, "not a zip archive (corrupt or wrong file)") from None
                if members:
                    h5_files += [(_extract_h5_member(src, m), f"{src}:{m}") for m in sorted(members)]
                else:
                    photo_sources.append(src)
            elif src.is_dir() and not _list_images(_walk(src)) and (found := sorted(p for p in src.rglob("*") if p.name.lower().endswith(HDF5_SUFFIXES))):
                h5_files += [(p, str(p)) for p in found]
            elif src.is_dir() or is_archive(src):
                photo_sources.append(src)
            else:
                raise InputFileError(src, f"not a folder, archive or HDF5 file; expected {self.source_layout}")
        items: list[_Item] = []
        stems = [_safe_part(Path(p).stem) for p, _ in h5_files]
        for (path, display), stem in zip(h5_files, stems):
            count = _check_h5(path, display)
            prefix = stem if stems.count(stem) == 1 else f"{stem}-{hashlib.sha1(display.encode()).hexdigest()[:8]}"
            items += [_Item(f"{prefix}_{i:06d}", f"{display}:imgs[{i}]", "h5", (str(path), i)) for i in range(count)]
        tree = None
        if photo_sources:
            tree = open_sources(photo_sources)
            names = _list_images(tree.names())
            out = safe_names(names)
            items += [_Item(out[n], n, "tree", n) for n in names]
        taken = [it.name for it in items]
        if len(set(taken)) != len(taken):
            raise ConfigError("two sources give the same output names; pass one HDF5 file or photo folder at a time")
        return items, _Reader(tree)


def _walk(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
