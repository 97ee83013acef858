"""The summable state of an evaluation, how it becomes a report, and ``--shard`` / ``merge``.

Every measure of the evaluator keeps state that adds up over disjoint sets of images: confusion
matrices, Lab histogram counts, metric sums, FID's float64 feature sums, LPIPS sums (and, not
summed but combined, per-image LPIPS values and the positions of KID feature rows). A
:class:`Partial` holds that state with the JSON-able context that names what was measured; one
process's partial becomes a report with :func:`build_evaluation`, after ``torchrun`` ranks have
summed theirs. ``p2ptools eval --shard I/N`` writes its partial to a folder (:func:`write_partial`:
``partial.json``, ``state.npz``, ``features/*.npy``, ``images/*.png``) and ``p2ptools eval merge``
sums the folders (:func:`merge_partials`) into the report a single run writes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.color import LabBins, LabHistogram, intersections
from p2ptools.eval.confusion import scores
from p2ptools.eval.evaluation import Evaluation
from p2ptools.imageio import read_image, read_json, write_image, write_text_atomic
from p2ptools.labels import ClassTable
from p2ptools.progress import console

FORMAT = "p2ptools-eval-partial/1"
PARTIAL_MARKER = "partial.json"
COLOR_PROTOCOL = "skimage rgb2lab (D65), all pixels pooled, unit bins L [0,100] a,b [-128,128), clipped, normalised, intersection sum(min(p,q))"


@dataclass
class Partial:
    """State of one share of a results folder: ``context`` (JSON), ``arrays`` (summable),
    ``objects`` (combined, see :func:`p2ptools.eval.fidelity.merge_objects`), sample and
    gallery thumbnails, and which share it is (``shard`` = (i, n))."""

    context: dict[str, Any]
    arrays: dict[str, np.ndarray]
    objects: dict[str, Any]
    samples: list[dict[str, Any]]
    gallery: list[dict[str, Any]]
    shard: tuple[int, int] = (0, 1)


def _bins(data: dict) -> LabBins:
    return LabBins(float(data["width"]), tuple(data["L"]), tuple(data["a"]))


def build_evaluation(partial: Partial, feature_dir: Path | None, *, verbose: bool = True) -> Evaluation:
    """The numbers of a (summed) partial state: everything a report needs."""
    ctx, arrays = partial.context, partial.arrays
    classes = ClassTable.from_dict(ctx["classes"])
    c = classes.num_classes
    n_images = int(arrays["n"][0])
    report: dict[str, Any] = {"name": ctx["name"], "results": ctx["results"], "n_images": n_images}
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
    out = []
    for k, entry in enumerate(entries):
        saved = {key: value for key, value in entry.items() if not isinstance(value, np.ndarray) and value is not None}
        for role in ("input", "output", "truth"):
            if entry.get(role) is not None:
                rel = f"images/{prefix}{k:03d}_{role}.png"
                write_image(folder / rel, entry[role])
                saved[role] = rel
        out.append(saved)
    return out


def _load_images(entries: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        loaded = dict(entry)
        for role in ("input", "output", "truth"):
            loaded[role] = read_image(folder / entry[role]) if entry.get(role) else None
        out.append(loaded)
    return out


def write_partial(partial: Partial, folder: Path) -> Path:
    """Write a shard's state into ``folder`` (its KID features are already in ``folder/features``)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "state.npz", **partial.arrays)
    meta = {
        "format": FORMAT, "shard": list(partial.shard), "context": partial.context, "objects": partial.objects,
        "samples": _save_images(partial.samples, folder, "sample"), "gallery": _save_images(partial.gallery, folder, "worst"),
    }  # fmt: skip
    write_text_atomic(folder / PARTIAL_MARKER, json.dumps(meta, indent=1) + "\n")
    return folder / PARTIAL_MARKER


def read_partial(folder: Path) -> Partial:
    """A shard folder written by :func:`write_partial`."""
    meta = read_json(folder / PARTIAL_MARKER, missing="no partial.json: not a folder written by p2ptools eval --shard")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputFileError(folder / PARTIAL_MARKER, f"not a p2ptools partial evaluation (format {FORMAT!r})")
    try:
        with np.load(folder / "state.npz") as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputFileError(folder / "state.npz", f"unreadable ({exc})") from None
    return Partial(meta["context"], arrays, meta["objects"], _load_images(meta["samples"], folder), _load_images(meta["gallery"], folder), tuple(meta["shard"]))


def _same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def merge_partials(folders: list[Path], out: Path) -> tuple[Partial, Path]:
    """Sum the shards in ``folders`` (each of 0..N-1 exactly once, same settings) into one partial;
    their KID feature files are copied to ``out/features`` (returned)."""
    from p2ptools.eval.fidelity import merge_objects
    from p2ptools.metrics.state import add_states

    if not folders:
        raise ConfigError("eval merge: give the shard folders written by p2ptools eval --shard I/N")
    parts = [(Path(f), read_partial(Path(f))) for f in folders]
    first_dir, first = parts[0]
    count = first.shard[1]
    seen = sorted(p.shard[0] for _, p in parts)
    if any(p.shard[1] != count for _, p in parts) or seen != list(range(count)):
        raise ConfigError(f"eval merge: need each of the shards 0..{count - 1} of {count} once, got {', '.join(f'{p.shard[0]}/{p.shard[1]}' for _, p in parts)}")
    for folder, part in parts[1:]:
        if not _same_settings(part.context, first.context):
            raise InputFileError(folder / PARTIAL_MARKER, f"was evaluated with other settings or inputs than {first_dir}")
    parts.sort(key=lambda item: item[1].shard[0])
    arrays = parts[0][1].arrays
    for _, part in parts[1:]:
        arrays = add_states(arrays, part.arrays)
    objects = merge_objects([p.objects for _, p in parts]) if first.context.get("fidelity") else {}
    feature_dir = out / "features"
    for folder, part in parts:
        for entries in part.objects.get("parts", {}).values():
            for name, _ in entries:
                feature_dir.mkdir(parents=True, exist_ok=True)
                source = folder / "features" / name
                if not source.is_file():
                    raise InputFileError(source, "KID feature file of this shard is missing")
                shutil.copyfile(source, feature_dir / name)
    gallery = sorted((g for _, p in parts for g in p.gallery), key=lambda g: (-g["value"], g["name"]))[: (first.context.get("fidelity") or {}).get("gallery", 12)]
    samples = parts[0][1].samples
    return Partial(first.context, arrays, objects, samples, gallery, (0, 1)), feature_dir
