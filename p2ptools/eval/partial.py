"""The summable state of an evaluation, how it becomes a report, and ``--shard`` / ``merge``.

Every measure of the evaluator keeps state that adds up over disjoint sets of images: confusion
matrices, Lab histogram counts, metric sums, FID's float64 feature sums, LPIPS sums (and, not
summed but combined, per-image LPIPS values and the positions of KID feature rows). A
:class:`Partial` holds that state with the JSON-able context that names what was measured; one
process's partial becomes a report with :func:`build_evaluation`, after ``torchrun`` ranks have
summed theirs. ``p2ptools eval --shard I/N`` writes its partial to a folder (:func:`write_partial`:
``partial.json``, ``state.npz``, ``features/*.npy``, ``images/*.png``) and ``p2ptools eval merge``
sums the folders (:func:`merge_partials`) into the report a single run writes, after checking
every part completely (:mod:`p2ptools.eval.partial_schema`: parts are untrusted input).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.color import LabBins, LabHistogram, intersections
from p2ptools.eval.confusion import scores
from p2ptools.eval.evaluation import Evaluation
from p2ptools.eval.partial_schema import FORMAT, MAX_THUMB, check_features, check_meta, inside, load_state, positions
from p2ptools.eval.schema import first_difference
from p2ptools.imageio import read_image, read_json, write_image, write_text_atomic
from p2ptools.labels import ClassTable
from p2ptools.progress import console

PARTIAL_MARKER = "partial.json"
IMAGES = "images"
ROLES = ("input", "output", "truth")
COLOR_PROTOCOL = "skimage rgb2lab (D65), all pixels pooled, unit bins L [0,100] a,b [-128,128), clipped, normalised, intersection sum(min(p,q))"


@dataclass
class Partial:
    """State of one share of a results folder: ``context`` (JSON), ``arrays`` (summable),
    ``objects`` (combined, see :func:`p2ptools.eval.fidelity.merge_objects`), sample and
    gallery thumbnails (a sample's ``position`` is its result's place in the whole results folder),
    which share it is (``shard`` = (i, n)) and the names of its results, in order."""

    context: dict[str, Any]
    arrays: dict[str, np.ndarray]
    objects: dict[str, Any]
    samples: list[dict[str, Any]]
    gallery: list[dict[str, Any]]
    shard: tuple[int, int] = (0, 1)
    names: list[str] = field(default_factory=list)


def _bins(data: dict) -> LabBins:
    return LabBins(float(data["width"]), tuple(data["L"]), tuple(data["a"]))


def build_evaluation(partial: Partial, feature_dir: Path | None, *, verbose: bool = True) -> Evaluation:
    """The numbers of a (summed) partial state: everything a report needs."""
    ctx, arrays = partial.context, partial.arrays
    classes = ClassTable.from_dict(ctx["classes"])
    c = classes.num_classes
    n_images = int(arrays["n"][0])
    report: dict[str, Any] = {"name": ctx["name"], "results": ctx["results"], "n_images": n_images}
    report.update({key: ctx[key] for key in ("split", "device") if key in ctx})  # the split scored; the device(s) it ran on
    evaluation = Evaluation(ctx["name"], report, classes=classes)
    if "hist" in arrays:
        block = scores(arrays["hist"], classes.names)
        block.update({"n_images": n_images, "classes": classes.name, "num_classes": c, "labels": ctx["labels"]})
        if ctx["fcn"] and ctx["scorer_info"]:
            block["scorer"] = dict(ctx["scorer_info"])
        report["seg" if ctx["seg"] else "fcn"] = block
        evaluation.confusion = arrays["hist"]
        if "warning" in block and verbose:
            console.print(f"warning: {report['name']}: {block['warning']}", highlight=False, soft_wrap=True)
    if "gt_hist" in arrays:
        block = scores(arrays["gt_hist"], classes.names)
        block.update({"n_images": n_images, "classes": classes.name, "num_classes": c, "labels": ctx["labels"], "photos": ctx["photos"],
                      "resized_to": "the size of each result (" + ", ".join(ctx.get("real_sizes") or []) + ")"})
        report["ground_truth"] = {"fcn": block}
        evaluation.gt_confusion = arrays["gt_hist"]
    if "miou_hist" in arrays:
        from p2ptools.eval.miou import miou_block

        report["miou"] = miou_block(arrays["miou_hist"], ctx["miou"], n_images)
    if ctx["color"]:
        bins = _bins(ctx["bins"])
        hist_out, hist_gt = LabHistogram(bins), LabHistogram(bins)
        for ch in hist_out.counts:
            hist_out.counts[ch], hist_gt.counts[ch] = arrays[f"out_{ch}"], arrays[f"gt_{ch}"]
        report["color"] = {**intersections(hist_out, hist_gt), "bins": ctx["bins"], "ground_truth": ctx["photos"], "protocol": COLOR_PROTOCOL}
        evaluation.color, evaluation.color_truth = hist_out.probabilities(), hist_gt.probabilities()
    if "metrics" in arrays:
        from p2ptools.eval.metrics import MetricsAccumulator

        metrics = MetricsAccumulator()
        metrics.load_array(arrays["metrics"])
        report["image"] = {**metrics.result(), "ground_truth": ctx["photos"]}
    if ctx.get("fidelity"):
        from p2ptools.eval.fidelity import fidelity_report

        blocks, warnings = fidelity_report(ctx["fidelity"], arrays, partial.objects, Path(feature_dir or "."), ctx["photos"])
        report.update(blocks)
        if verbose:
            for text in warnings:
                console.print(f"warning: {report['name']}: {text}", highlight=False, soft_wrap=True)
        evaluation.per_image = dict(partial.objects.get("per_image", {}))
    evaluation.samples = partial.samples
    evaluation.gallery = partial.gallery
    return evaluation


# --------------------------------------------------------------------------- shard files


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N.

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard: need 0 <= I < N, got {text!r}")
    return i, n


def _save_images(entries: list[dict[str, Any]], folder: Path, prefix: str) -> list[dict[str, Any]]:
    """Thumbnails as ``folder/images/<prefix><k>_<role>.png``; the entries name them by file name."""
    out = []
    for k, entry in enumerate(entries):
        saved = {key: value for key, value in entry.items() if key not in ROLES}
        for role in ROLES:
            saved[role] = None
            if entry.get(role) is not None:
                saved[role] = f"{prefix}{k:03d}_{role}.png"
                write_image(folder / IMAGES / saved[role], entry[role])
        out.append(saved)
    return out


def _load_images(entries: list[dict[str, Any]], folder: Path, what: str, meta_path: Path) -> list[dict[str, Any]]:
    """The thumbnails of checked entries (plain file names), each inside the part and at most thumbnail-sized."""
    out = []
    for k, entry in enumerate(entries):
        loaded = dict(entry)
        for role in ROLES:
            if entry[role] is None:
                continue
            at = f"{what}[{k}].{role}"
            path = inside(folder, IMAGES, entry[role], at, meta_path)
            try:
                image = read_image(path)
            except InputFileError as exc:
                raise InputFileError(path, f"{at}: {exc.problem}") from None
            if max(image.shape[:2]) > MAX_THUMB:
                raise InputFileError(path, f"{at}: {image.shape[1]}x{image.shape[0]} is larger than a {MAX_THUMB}-px thumbnail")
            loaded[role] = image
        out.append(loaded)
    return out


def write_partial(partial: Partial, folder: Path) -> Path:
    """Write a shard's state into ``folder`` (its KID features are already in ``folder/features``)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "state.npz", **partial.arrays)
    meta = {
        "format": FORMAT, "shard": list(partial.shard), "names": list(partial.names), "context": partial.context, "objects": partial.objects,
        "samples": _save_images(partial.samples, folder, "sample"), "gallery": _save_images(partial.gallery, folder, "worst"),
    }  # fmt: skip
    write_text_atomic(folder / PARTIAL_MARKER, json.dumps(meta, indent=1) + "\n")
    return folder / PARTIAL_MARKER


def read_partial(folder: Path) -> Partial:
    """A shard folder written by :func:`write_partial`, checked completely (:mod:`p2ptools.eval.partial_schema`).

    Raises:
        InputFileError: the part's file and the field at fault.
    """
    folder = Path(folder)
    path = folder / PARTIAL_MARKER
    try:
        meta = read_json(path, missing="no partial.json: not a folder written by p2ptools eval --shard")
    except RecursionError:  # json's parser on absurdly nested input
        raise InputFileError(path, "not valid JSON (nested too deeply)") from None
    meta = check_meta(meta, path)
    arrays = load_state(folder / "state.npz", meta)
    check_features(folder, meta, arrays, path)
    samples, gallery = _load_images(meta["samples"], folder, "samples", path), _load_images(meta["gallery"], folder, "gallery", path)
    return Partial(meta["context"], arrays, meta["objects"], samples, gallery, tuple(meta["shard"]), meta["names"])


def _settings(context: dict[str, Any]) -> dict[str, Any]:
    """What must be equal in every part: the context but for the results' sizes and the device (each
    share's own)."""
    return {key: value for key, value in context.items() if key not in ("real_sizes", "device")}


def _check_together(parts: list[tuple[Path, Partial]]) -> None:
    """Shards 0..N-1 of one N each exactly once, of one evaluation, with disjoint names and the counts
    of one results folder split N ways."""
    first_dir, first = parts[0]
    count = first.shard[1]
    holder: dict[int, Path] = {}
    for folder, part in parts:
        i, n = part.shard
        if n != count:
            raise InputFileError(folder / PARTIAL_MARKER, f"shard: {i}/{n} is a shard of {n}, but {first_dir / PARTIAL_MARKER} is shard {first.shard[0]}/{count} of {count}")
        if i in holder:
            raise InputFileError(folder / PARTIAL_MARKER, f"shard: {i}/{n} is given twice (also {holder[i]})")
        holder[i] = folder
    missing = [i for i in range(count) if i not in holder]
    if missing:
        given = ", ".join(f"{p.shard[0]}/{p.shard[1]} ({f})" for f, p in parts)
        raise ConfigError(f"eval merge: shard {missing[0]}/{count} is missing: need each of the shards 0..{count - 1} of {count} once, got {given}")
    owner: dict[str, Path] = {}
    total = sum(len(p.names) for _, p in parts)
    for folder, part in parts:
        differs = first_difference(_settings(part.context), _settings(first.context), "context")
        if differs is not None:
            raise InputFileError(folder / PARTIAL_MARKER, f"{differs}: differs from {first_dir / PARTIAL_MARKER} (evaluated with other settings or inputs)")
        expected = len(range(part.shard[0], total, count))
        if len(part.names) != expected:
            raise InputFileError(folder / PARTIAL_MARKER, f"names: {len(part.names)} results, but shard {part.shard[0]}/{count} of {total} results has {expected}")
        for name in part.names:
            if name in owner:
                raise InputFileError(folder / PARTIAL_MARKER, f"names: {name!r} is also in {owner[name] / PARTIAL_MARKER}")
            owner[name] = folder
    if total == 0:
        raise ConfigError("eval merge: the shards hold no results")


def merge_partials(folders: list[Path], out: Path) -> tuple[Partial, Path]:
    """Sum the shards in ``folders`` (each of 0..N-1 exactly once, same settings) into one partial;
    their KID feature files are copied to ``out/features`` (returned). Every part is read and
    checked before anything is written.

    Raises:
        InputFileError: a part (its file and field) that is damaged, tampered with or does not fit the others.
        ConfigError: no parts, or a shard missing.
    """
    from p2ptools.eval.fidelity import merge_objects
    from p2ptools.metrics.state import add_states

    if not folders:
        raise ConfigError("eval merge: give the shard folders written by p2ptools eval --shard I/N")
    parts = [(Path(f), read_partial(Path(f))) for f in folders]
    _check_together(parts)
    first = parts[0][1]
    parts.sort(key=lambda item: item[1].shard[0])
    arrays = parts[0][1].arrays
    for _, part in parts[1:]:
        arrays = add_states(arrays, part.arrays)
    objects = merge_objects([p.objects for _, p in parts]) if first.context.get("fidelity") else {}
    feature_dir = out / "features"
    for folder, part in parts:
        for entries in part.objects.get("parts", {}).values():
            for name, _ in entries:  # plain file names of this shard (partial_schema.check_meta)
                feature_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / "features" / name, feature_dir / name)
    gallery = sorted((g for _, p in parts for g in p.gallery), key=lambda g: (-g["value"], g["name"]))[: (first.context.get("fidelity") or {}).get("gallery", 12)]
    samples = merge_samples([p.samples for _, p in parts], first.context["samples"])
    names = [name for _, name in sorted((pos, name) for _, p in parts for pos, name in zip(positions(p.shard, len(p.names)), p.names, strict=True))]
    context = {**first.context, "real_sizes": sorted({size for _, p in parts for size in p.context["real_sizes"]})}
    if any("device" in p.context for _, p in parts):
        context["device"] = ", ".join(sorted({p.context.get("device") or "unknown" for _, p in parts}))
    return Partial(context, arrays, objects, samples, gallery, (0, 1), names), feature_dir


def merge_samples(shares: list[list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """The first ``count`` samples by position of several shares' samples (shards or ranks): the
    samples one process shows of the whole results folder."""
    return sorted((s for share in shares for s in share), key=lambda s: s["position"])[:count]
