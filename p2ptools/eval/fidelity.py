"""FID, KID and LPIPS inside the evaluator's streaming pass (``p2ptools eval --fid --kid --lpips``).

:class:`FidelityModels` loads the networks once per evaluation (from local files only);
:class:`FidelityPass` feeds one results folder's share of images (all of them, a ``torchrun``
rank's strided share, or an ``--shard I/N``) through them: FID as float64 sums (:mod:`p2ptools.metrics.fid`),
KID features into ``.npy`` files in the report folder, LPIPS as a sum plus per-image values.
:func:`fidelity_report` turns the (summed) state into the report's ``fid``, ``kid`` and ``lpips`` blocks.

Ground-truth statistics are cached in the user cache folder (``fid-truth/<key>``), keyed by the
sha256 of every ground-truth file's bytes (plus the half taken from a pair file), the protocol and
the Inception weights' sha256, so scoring five runs against one test split computes it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.cache import cache_root
from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import sha256_file
from p2ptools.metrics.fid import (
    FEATURE_DIM,
    FID_MIN_IMAGES,
    GaussianStats,
    fid_from_stats,
)
from p2ptools.metrics.kid import (
    KID_SEED,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    FeatureFile,
    FeaturePart,
    FeatureSet,
    kid,
)
from p2ptools.metrics.lpips import PROTOCOL as LPIPS_PROTOCOL
from p2ptools.metrics.lpips import LPIPSState
from p2ptools.metrics.resize import PROTOCOL_TEXT, PROTOCOLS
from p2ptools.options import SAMPLES, SEED, check_options

CACHE_FOLDER = "fid-truth"
CACHE_VERSION = "1"


@dataclass(frozen=True)
class FidelityOptions:
    """What to compute and from which local weights (see ``p2ptools eval --help``)."""

    fid: bool = False
    kid: bool = False
    lpips: bool = False
    protocol: str = "clean"
    inception_weights: Path | None = None
    lpips_net: str = field(default="alex", metadata={"choices": ("alex", "vgg")})
    lpips_backbone_weights: Path | None = None
    kid_subsets: int = field(default=KID_SUBSETS, metadata={"range": (1, 100_000)})
    kid_subset_size: int = field(default=KID_SUBSET_SIZE, metadata={"range": (2, 1_000_000)})
    kid_seed: int = field(default=KID_SEED, metadata={"range": SEED})
    gallery: int = field(default=12, metadata={"range": SAMPLES})
    cache: bool = True

    @property
    def inception(self) -> bool:
        return self.fid or self.kid

    @property
    def any(self) -> bool:
        return self.inception or self.lpips

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--fid-protocol: invalid value {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        check_options(self)


class FidelityModels:
    """The Inception feature extractor and/or the LPIPS scorer, loaded once, and their weight records."""

    def __init__(self, options: FidelityOptions, device: str = "cpu") -> None:
        from p2ptools.metrics.inception import FeatureExtractor, load_inception
        from p2ptools.metrics.lpips import MIN_SIZE, LPIPSScorer, load_lpips

        options.check()
        self.options = options
        self.feature_dim = FEATURE_DIM
        self.extractor, self.inception_info = None, None
        self.lpips, self.lpips_info = None, None
        if options.inception:
            net, self.inception_info = load_inception(options.inception_weights)
            self.extractor = FeatureExtractor(net, options.protocol, device)
            self.feature_dim = self.extractor.dim
        if options.lpips:
            model, self.lpips_info = load_lpips(options.lpips_net, options.lpips_backbone_weights, device)
            self.lpips = LPIPSScorer(model, device, MIN_SIZE[options.lpips_net])


def truth_key(origins: list[tuple[str, str]], protocol: str, weights_sha: str) -> str:
    """Cache key of a ground-truth share: each (name, origin) file's sha256, the protocol, the weights."""
    h = hashlib.sha256(f"p2ptools-fid-truth/{CACHE_VERSION}|{protocol}|{weights_sha}".encode())
    for name, origin in origins:
        path, _, part = origin.partition("#")
        h.update(f"|{name}|{sha256_file(path)}#{part}".encode())
    return h.hexdigest()[:32]


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


@dataclass
class FidelityPass:
    """One process's share of one results folder through the fidelity metrics.

    Args:
        models: the loaded networks.
        positions: each file's position in the whole results folder (its global order).
        feature_dir: where the KID feature files go (inside the report folder).
        tag: distinguishes this share's files (``rank0-of-1``, ``shard2-of-4``).
        origins: (name, file[#half]) of each ground-truth image, for the cache key; None = no cache.
    """

    models: FidelityModels
    positions: np.ndarray
    feature_dir: Path
    tag: str
    origins: list[tuple[str, str]] | None = None
    written: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        opts = self.models.options
        n = len(self.positions)
        self.dim = self.models.feature_dim
        self.fid_out, self.fid_gt = GaussianStats(self.dim), GaussianStats(self.dim)
        self.lpips = LPIPSState()
        self.sizes: dict[str, Counter] = {"results": Counter(), "truth": Counter()}
        self.out_file = self.gt_file = None
        self.cache_hit = False
        self.key = None
        if opts.inception:
            self.out_file = self._features("results", n)
            if opts.cache and self.origins is not None:
                self.key = truth_key(self.origins, opts.protocol, self.models.inception_info["sha256"])
                self.cache_hit = self._load_cached()
            if not self.cache_hit:
                self.gt_file = self._features("truth", n)

    def _staged(self, what: str) -> Path:
        """Where a feature file is written until :meth:`close` renames it (a failed pass leaves the
        files of an earlier report in the folder untouched)."""
        path = self.feature_dir / f"{what}.{self.tag}.npy.partial"
        self.written.append(path)
        return path

    def _features(self, what: str, rows: int) -> FeatureFile:
        return FeatureFile(self._staged(what), rows, self.dim)

    @property
    def _cache_dir(self) -> Path:
        return cache_root() / CACHE_FOLDER / self.key

    def _load_cached(self) -> bool:
        folder = self._cache_dir
        try:
            with np.load(folder / "stats.npz") as data:
                state = {k: data[k] for k in data.files}
            if int(state["count"][0]) != len(self.positions):
                return False
            self.feature_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "features.npy", self._staged("truth"))
        except (OSError, KeyError, ValueError):
            return False
        self.fid_gt.load_state(state)
        return True

    def _save_cache(self) -> None:
        folder = self._cache_dir
        if folder.is_dir():
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.key}.", dir=folder.parent))
        try:
            np.savez(staging / "stats.npz", **self.fid_gt.state())
            shutil.copyfile(self.feature_dir / f"truth.{self.tag}.npy.partial", staging / "features.npy")
            os.replace(staging, folder)
        except OSError:  # another process won the race, or the cache is read-only: the cache is optional
            shutil.rmtree(staging, ignore_errors=True)

    def update(self, paths: list[Path], outputs: list[np.ndarray], truths: list[np.ndarray]) -> None:
        """Add one batch of results (their files and images) and their ground-truth photos.

        Raises:
            InputFileError: a pair LPIPS cannot score (smaller than its backbone's pooling allows).
        """
        opts = self.models.options
        names = [p.stem for p in paths]
        self.sizes["results"].update(_size(o) for o in outputs)
        self.sizes["truth"].update(_size(t) for t in truths)
        if opts.inception:
            both = self.models.extractor(outputs if self.cache_hit else outputs + truths)  # one batch through the network
            feats, gt = both[: len(outputs)], both[len(outputs) :]
            self.fid_out.update(feats)
            self.out_file.append(feats)
            if not self.cache_hit:
                self.fid_gt.update(gt)
                self.gt_file.append(gt)
        if opts.lpips:
            try:
                values, resized = self.models.lpips(outputs, truths)
            except ValueError as exc:
                bad = next((p for p, t in zip(paths, truths, strict=True) if min(t.shape[:2]) < getattr(self.models.lpips, "min_size", 1)), paths[0])
                raise InputFileError(bad, str(exc).split(", the ground truth")[0]) from None
            self.lpips.update(names, values, resized)

    def close(self) -> None:
        """Flush the feature files (and fill the ground-truth cache), then give them their names."""
        if self.out_file is not None:
            self.out_file.close()
        if self.gt_file is not None:
            self.gt_file.close()
            if self.key is not None:
                self._save_cache()
        for staged in self.written:
            os.replace(staged, staged.with_suffix(""))  # drop ".partial"
        self.written = []

    def discard(self) -> None:
        """Remove the files this pass wrote (after an error: no partial report)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.feature_dir.rmdir()

    def state(self) -> dict[str, np.ndarray]:
        """The summable arrays, keys prefixed ``fid_out.``, ``fid_gt.``, ``lpips.``."""
        out: dict[str, np.ndarray] = {}
        if self.models.options.inception:
            out.update({f"fid_out.{k}": v for k, v in self.fid_out.state().items()})
            out.update({f"fid_gt.{k}": v for k, v in self.fid_gt.state().items()})
        if self.models.options.lpips:
            out.update({f"lpips.{k}": v for k, v in self.lpips.state().items()})
        return out

    def objects(self) -> dict[str, Any]:
        """What does not sum: per-image LPIPS values, image sizes, feature parts (for gathering)."""
        parts = {}
        if self.models.options.inception:
            parts = {what: [(f"{what}.{self.tag}.npy", self.positions.tolist())] for what in ("results", "truth")}
        return {"per_image": dict(self.lpips.per_image), "sizes": {k: dict(v) for k, v in self.sizes.items()}, "parts": parts, "cache_hits": int(self.cache_hit)}


def merge_objects(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine :meth:`FidelityPass.objects` of several shares."""
    per_image: dict[str, float] = {}
    sizes: dict[str, Counter] = {"results": Counter(), "truth": Counter()}
    parts: dict[str, list] = {}
    hits = 0
    for item in items:
        per_image.update(item["per_image"])
        for k in sizes:
            sizes[k].update(item["sizes"].get(k, {}))
        for what, entries in item["parts"].items():
            parts.setdefault(what, []).extend(entries)
        hits += item.get("cache_hits", 0)
    return {"per_image": per_image, "sizes": {k: dict(sorted(v.items())) for k, v in sizes.items()}, "parts": parts, "cache_hits": hits}


def fidelity_context(models: FidelityModels) -> dict[str, Any]:
    """The JSON-able settings a report (and a merge) needs."""
    o = models.options
    return {
        "fid": o.fid, "kid": o.kid, "lpips": o.lpips, "protocol": o.protocol,
        "kid_subsets": o.kid_subsets, "kid_subset_size": o.kid_subset_size, "kid_seed": o.kid_seed, "gallery": o.gallery,
        "inception": models.inception_info, "lpips_weights": models.lpips_info,
    }  # fmt: skip


def fidelity_report(ctx: dict[str, Any], arrays: dict[str, np.ndarray], objects: dict[str, Any], feature_dir: Path, ground_truth: str) -> tuple[dict[str, Any], list[str]]:
    """The ``fid`` / ``kid`` / ``lpips`` report blocks from summed state, and warnings to print.

    Raises:
        ConfigError: fewer than 2 images for FID or KID.
    """
    blocks: dict[str, Any] = {}
    warnings: list[str] = []
    sizes = objects["sizes"]
    if ctx["fid"] or ctx["kid"]:
        out, gt = GaussianStats(FEATURE_DIM), GaussianStats(FEATURE_DIM)
        out.load_state({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("fid_out.")})
        gt.load_state({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("fid_gt.")})
        n = out.count
        if n < 2:
            raise ConfigError(f"FID and KID need at least 2 images, the results have {n}")
        common = {"n_images": n, "ground_truth": ground_truth, "protocol": ctx["protocol"], "protocol_text": PROTOCOL_TEXT[ctx["protocol"]], "weights": ctx["inception"], "sizes": sizes}
        if ctx["fid"]:
            block = {"value": fid_from_stats(out, gt), **common, "ground_truth_cached_shares": objects.get("cache_hits", 0)}
            if n < FID_MIN_IMAGES:
                block["warning"] = f"FID on {n} images (< {FID_MIN_IMAGES}) is strongly biased upwards; compare runs by KID"
                warnings.append(block["warning"])
            blocks["fid"] = block
        if ctx["kid"]:
            sets = {what: FeatureSet([FeaturePart(feature_dir / name, np.asarray(pos, np.int64)) for name, pos in objects["parts"][what]]) for what in ("results", "truth")}
            result = kid(sets["results"], sets["truth"], subsets=ctx["kid_subsets"], subset_size=ctx["kid_subset_size"], seed=ctx["kid_seed"])
            blocks["kid"] = {**result, **common, "features": {w: [name for name, _ in objects["parts"][w]] for w in sets}}
    if ctx["lpips"]:
        state = LPIPSState()
        state.load_state({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("lpips.")})
        blocks["lpips"] = {**state.result(), "ground_truth": ground_truth, "protocol": LPIPS_PROTOCOL, "weights": ctx["lpips_weights"], "per_image": "lpips_per_image.csv", "sizes": sizes}
    return blocks, warnings


def worst_images(per_image: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` highest LPIPS values, worst first (ties by name)."""
    return sorted(per_image.items(), key=lambda item: (-item[1], item[0]))[:k]


def write_per_image(per_image: dict[str, float], path: Path) -> None:
    """``name,lpips`` for every image, worst first."""
    from p2ptools.imageio import write_text_atomic

    lines = ["name,lpips"] + [f"{json.dumps(name) if ',' in name else name},{value:.8f}" for name, value in worst_images(per_image, len(per_image))]
    write_text_atomic(path, "\n".join(lines) + "\n")
