"""One streaming pass over a results folder: FCN (or segmentation) scores, Lab color histograms and
image metrics against the ground truth, with memory independent of the number of images.

Under ``torchrun`` (``torch.distributed`` initialised) each rank takes every ``world``-th result and
the confusion matrices, histogram counts and metric sums are added with ``all_reduce``; every rank
gets the same :class:`Evaluation` and rank 0 writes the report.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.eval.color import LabBins, LabHistogram, save_color_tables
from p2ptools.eval.confusion import accumulate, new_hist
from p2ptools.eval.matching import (
    CityscapesLabels,
    DatasetPhotos,
    FrameIndex,
    LabelFolder,
    LabelSource,
    ManifestLabels,
    PhotoFolder,
    PhotoSource,
    ResultSet,
)
from p2ptools.eval.evaluation import GROUND_TRUTH_SIZE, Evaluation  # noqa: F401  (Evaluation: re-exported, where it always lived)
from p2ptools.eval.fidelity import FidelityOptions
from p2ptools.eval.metrics import MetricsAccumulator
from p2ptools.eval.miou import MiouOptions
from p2ptools.imageio import read_image
from p2ptools.labels import CITYSCAPES, ClassTable
from p2ptools.pairs import MANIFEST_NAME, Manifest, evaluation_split, load_manifest
from p2ptools.progress import make_progress

if TYPE_CHECKING:
    from p2ptools.eval.fidelity import FidelityModels

SAMPLE_SIZE = 256


class ScorerLike(Protocol):
    """What the evaluator needs of :class:`p2ptools.eval.scorer.Scorer`."""

    classes: ClassTable

    def predict(self, images: list[np.ndarray], label_size: tuple[int, int]) -> np.ndarray: ...


@dataclass(frozen=True)
class EvalOptions:
    """What to measure and where the ground truth is.

    Attributes:
        fcn: score the results (photos) with the FCN scorer against label maps.
        seg: the results are color label maps: decode by nearest class color and score.
        color: Lab histogram intersections against the ground-truth photos.
        image_metrics: L1 / PSNR / SSIM against the ground-truth photos (None = when photos exist
            and the results are photos).
        cityscapes / labels: label sources (Cityscapes root; folder of train-id or color PNGs).
        real / data: photo sources (folder matched by stem; aligned dataset, target half).
        split, direction: of ``data`` (split None = :func:`p2ptools.pairs.evaluation_split`, test
            when the dataset has it, else val; direction None = the results' translate.json, else AtoB).
        ground_truth_row: also score the real photos, each resized to its result's size (256x256 in
            the paper's protocol), with the FCN.
        fidelity: FID / KID / LPIPS against the ground-truth photos, and their weights.
        miou: the mIoU protocol (:mod:`p2ptools.eval.miou`) of a registered scorer, or None.
    """

    fcn: bool = False
    seg: bool = False
    color: bool = False
    image_metrics: bool | None = None
    cityscapes: Path | None = None
    labels: Path | None = None
    real: Path | None = None
    data: Path | None = None
    split: str | None = None
    direction: str | None = None
    ground_truth_row: bool = False
    batch_size: int = 8
    samples: int = 8
    progress: bool = True
    bins: LabBins = field(default_factory=LabBins)
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)
    miou: MiouOptions | None = None


# ---------------------------------------------------------------------------------------------
# ground-truth sources


def dataset_manifest(results: ResultSet, options: EvalOptions) -> tuple[Path | None, Manifest | None]:
    """The aligned dataset behind the results (``--data``, else translate.json's) and its manifest."""
    root = options.data or results.dataset
    if root is None or not (Path(root) / MANIFEST_NAME).is_file():
        return (Path(root) if root else None), None
    return Path(root), load_manifest(root)


def class_table(manifest: Manifest | None, scorer: ScorerLike | None) -> ClassTable:
    """The scorer's class table, else the dataset's (manifest extras ``class_table``), else Cityscapes."""
    if scorer is not None:
        return scorer.classes
    table = (manifest.extras or {}).get("class_table") if manifest else None
    if isinstance(table, dict):
        try:
            return ClassTable.from_dict(table)
        except (KeyError, TypeError, ValueError):
            pass
    return CITYSCAPES


def label_source(results: ResultSet, options: EvalOptions, classes: ClassTable) -> LabelSource:
    root, manifest = dataset_manifest(results, options)
    frames = FrameIndex(manifest)
    if options.cityscapes:
        return CityscapesLabels(options.cityscapes, classes, frames)
    if options.labels:
        return LabelFolder(options.labels, classes, frames)
    if manifest is not None and any("labels" in rec.extras for rec in manifest.pairs):
        return ManifestLabels(root, classes, manifest)
    raise ConfigError("scoring needs ground-truth labels: give --cityscapes ROOT or --labels DIR (or --data DIR of a dataset with label maps)")


def photo_source(results: ResultSet, options: EvalOptions) -> PhotoSource | None:
    _, manifest = dataset_manifest(results, options)
    if options.real:
        return PhotoFolder(options.real, FrameIndex(manifest))
    if options.data:
        direction = options.direction or results.info.get("direction") or "AtoB"
        return DatasetPhotos(options.data, options.split or evaluation_split(options.data), direction)
    if results.targets is not None:
        return PhotoFolder(results.targets, what="target image")
    return None


# ---------------------------------------------------------------------------------------------
# the pass


def _batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def _score_batch(scorer: ScorerLike, hist: np.ndarray, images: list[np.ndarray], labels: list[np.ndarray], num_classes: int) -> None:
    """Run the scorer on images grouped by label size (one call per size) and accumulate."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab.shape[:2], []).append(i)
    for size, idx in groups.items():
        pred = np.asarray(scorer.predict([images[i] for i in idx], size))
        if pred.shape != (len(idx), *size):
            raise ConfigError(f"scorer returned predictions of shape {pred.shape}, expected {(len(idx), *size)}")
        for k, i in enumerate(idx):
            accumulate(hist, labels[i], pred[k], num_classes)


def _resize(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=interpolation)


def _thumb(image: np.ndarray | None) -> np.ndarray | None:
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = SAMPLE_SIZE / max(h, w)
    if scale >= 1:
        return image.copy()
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _input_image(results: ResultSet, photos: PhotoSource | None, path: Path) -> np.ndarray | None:
    if results.inputs is not None and (results.inputs / f"{path.stem}.png").is_file():
        return read_image(results.inputs / f"{path.stem}.png")
    if isinstance(photos, DatasetPhotos):
        return photos.input(path)
    return None


def distributed_context() -> tuple[int, int]:
    """(rank, world size) of an initialised ``torch.distributed`` group, else (0, 1).

    Without torch imported no group can exist, so torch is not imported just to ask.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL for CUDA devices, else
    gloo) and return this rank's device, resolved (``auto`` -> ``cuda:<LOCAL_RANK>`` or ``cpu``,
    ``cuda`` -> ``cuda:<LOCAL_RANK>``; :func:`p2ptools.devices.resolve_device`)."""
    from p2ptools.devices import resolve_device

    local = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local)  # an absent device is refused here, before any work
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return str(resolved)
    import torch
    import torch.distributed as dist

    cuda = resolved.type == "cuda"
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    return str(resolved)


@contextlib.contextmanager
def distributed_session(device: str) -> Iterator[str]:
    """:func:`init_distributed` for the duration of a ``with`` block, then leave the process group
    it joined (a group left alive races gloo's threads against interpreter exit: SIGABRT)."""
    import torch.distributed as dist

    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (dist.is_available() and dist.is_initialized())
    device = init_distributed(device)
    try:
        yield device
    except BaseException:
        if joined and dist.is_initialized():
            dist.destroy_process_group()  # no barrier: the other ranks may never arrive
        raise
    if joined and dist.is_initialized():
        dist.barrier()  # nobody leaves while another rank still reduces
        dist.destroy_process_group()


def sum_across_ranks(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Element-wise sums of each array over all ranks (``all_reduce``); unchanged with one process."""
    rank, world = distributed_context()
    if world == 1:
        return arrays
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = []
    for array in arrays:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        out.append(tensor.cpu().numpy().astype(array.dtype))
    return out


def evaluate_results(
    results: ResultSet,
    options: EvalOptions,
    scorer: ScorerLike | None = None,
    *,
    name: str | None = None,
    scorer_info: dict[str, Any] | None = None,
    on_image: Callable[[Path], None] | None = None,
    fidelity: FidelityModels | None = None,
    feature_dir: Path | None = None,
    shard: tuple[int, int] | None = None,
    miou_scorer: Any = None,
) -> Evaluation:
    """Evaluate one results folder in a single streaming pass.

    ``fidelity`` (the loaded FID/KID/LPIPS networks) adds those metrics; KID features go to
    ``feature_dir``. ``shard = (i, n)`` evaluates only every n-th result from the i-th and returns
    an :class:`Evaluation` whose ``partial`` is the summable state (see :mod:`p2ptools.eval.partial`).
    ``miou_scorer`` (a :class:`p2ptools.eval.scorers.SegmentationScorer`) runs ``options.miou``.

    Raises:
        ConfigError: a measure was asked for without its ground truth or scorer.
        InputFileError: a result without ground truth, an unreadable file, a size mismatch.
    """
    from p2ptools.eval.partial import Partial, build_evaluation

    if options.fcn and options.seg:
        raise ConfigError("--fcn scores photos and --seg scores label maps: choose one")
    if (options.fcn or options.ground_truth_row) and scorer is None:
        raise ConfigError("FCN scoring needs a scorer: give --fcn-weights PATH")
    fid_opts = options.fidelity
    if fid_opts.any and fidelity is None:
        raise ConfigError("FID, KID and LPIPS need their networks (FidelityModels)")
    _, manifest = dataset_manifest(results, options)
    mpass = None
    if options.miou is not None:
        from p2ptools.eval.miou import MiouPass, miou_label_source

        if miou_scorer is None:
            raise ConfigError(f"--miou {options.miou.scorer} needs its scorer (p2ptools.eval.miou.load_miou_scorer)")
        mlabels = miou_label_source(options.cityscapes, options.labels, miou_scorer.classes, FrameIndex(manifest), options.miou.split)
        mpass = MiouPass(results, options.miou, miou_scorer, mlabels)  # the whole folder covers the split, before any work
    classes = class_table(manifest, scorer)
    scoring = options.fcn or options.seg
    labels = label_source(results, options, classes) if scoring or options.ground_truth_row else None
    photos = photo_source(results, options)
    if options.color and photos is None:
        raise ConfigError("--color needs ground-truth photos: give --real DIR or --data DIR (or results of p2ptools translate with target/)")
    if options.ground_truth_row and photos is None:
        raise ConfigError("--ground-truth-row needs the real photos: give --real DIR or --data DIR (or results with target/)")
    if fid_opts.any and photos is None:
        raise ConfigError("--fid, --kid and --lpips need ground-truth photos: give --real DIR or --data DIR (or results of p2ptools translate with target/)")
    if fid_opts.inception and len(results.files) < 2:
        raise InputFileError(results.folder, f"FID and KID need at least 2 images, the results have {len(results.files)}")
    if fid_opts.lpips and isinstance(photos, PhotoFolder) and photos.count() != len(results.files):
        raise InputFileError(photos.files.folder, f"{photos.count()} ground-truth photos for {len(results.files)} results: paired LPIPS needs one per result")
    want_metrics = options.image_metrics if options.image_metrics is not None else (photos is not None and not options.seg)
    if want_metrics and photos is None:
        raise ConfigError("image metrics need ground-truth photos: give --real DIR or --data DIR")

    c = classes.num_classes
    hist = new_hist(c) if scoring else None
    gt_hist = new_hist(c) if options.ground_truth_row else None
    hist_out = LabHistogram(options.bins) if options.color else None
    hist_gt = LabHistogram(options.bins) if options.color else None
    metrics = MetricsAccumulator() if want_metrics else None
    rank, world = distributed_context()
    if shard is not None and world > 1:
        raise ConfigError("--shard splits the work without a process group: do not combine it with torchrun")
    index, count = shard if shard is not None else (rank, world)
    files = results.files[index::count]
    place = dict(zip(files, range(index, len(results.files), count), strict=True))  # a file's position in the whole folder
    samples: list[dict[str, Any]] = []  # this share's among the first options.samples results (merged: merge_samples)
    need_photo = bool(options.color or want_metrics or options.ground_truth_row or fid_opts.any)
    real_sizes: set[str] = set()  # the results' sizes, to which the real photos are resized
    fpass = None
    if fid_opts.any:
        from p2ptools.eval.fidelity import FidelityPass

        origins = [(p.stem, photos.origin(p)) for p in files] if hasattr(photos, "origin") else None
        tag = f"shard{index}-of-{count}" if shard is not None else f"rank{index}-of-{count}"
        if feature_dir is None:  # a library call without a report folder: features in a temporary folder
            import tempfile

            feature_dir = Path(tempfile.mkdtemp(prefix="p2ptools-features-"))
        fpass = FidelityPass(fidelity, np.arange(index, len(results.files), count), Path(feature_dir), tag, origins)

    try:
        with make_progress(options.progress and rank == 0) as bar:
            task = bar.add_task(f"eval {name or results.folder.name}", total=len(files))
            for batch in _batches(files, max(1, options.batch_size)):
                outputs = [read_image(path) for path in batch]
                read_truth = photos is not None and (need_photo or place[batch[0]] < options.samples)
                truths = [photos.photo(path) if read_truth else None for path in batch]
                gts = [labels.labels(path) for path in batch] if labels is not None else None
                if options.fcn:
                    _score_batch(scorer, hist, outputs, gts, c)
                if options.seg:
                    for path, out, gt in zip(batch, outputs, gts, strict=True):
                        pred = _resize(classes.decode_colors(out), gt.shape, cv2.INTER_NEAREST)
                        accumulate(hist, gt, pred, c)
                if options.ground_truth_row:
                    real = [_resize(t, out.shape[:2], cv2.INTER_AREA) for t, out in zip(truths, outputs, strict=True)]
                    real_sizes.update(f"{out.shape[1]}x{out.shape[0]}" for out in outputs)
                    _score_batch(scorer, gt_hist, real, gts, c)
                if fpass is not None:
                    fpass.update(batch, outputs, truths)
                if mpass is not None:
                    mpass.update(batch, outputs)
                for path, out, truth in zip(batch, outputs, truths, strict=True):
                    if hist_out is not None:
                        hist_out.update(out)
                        hist_gt.update(truth)
                    if metrics is not None:
                        if out.shape != truth.shape:
                            raise InputFileError(path, f"result is {out.shape[1]}x{out.shape[0]} but its ground-truth photo is {truth.shape[1]}x{truth.shape[0]}")
                        try:
                            metrics.update(out, truth)
                        except ValueError as exc:
                            raise InputFileError(path, str(exc)) from None
                    if place[path] < options.samples:
                        shown = truth if truth is not None else (classes.render(gts[batch.index(path)]) if gts is not None else None)
                        samples.append({"name": path.stem, "position": place[path], "input": _thumb(_input_image(results, photos, path)), "output": _thumb(out), "truth": _thumb(shown)})
                    if on_image is not None:
                        on_image(path)
                bar.advance(task, len(batch))
        if fpass is not None:
            fpass.close()
    except BaseException:
        if fpass is not None:
            fpass.discard()
        raise
    if hist_out is not None and rank == 0:
        save_color_tables()  # colors seen in this run stay converted for the next

    # sum over ranks (a no-op in one process), then the numbers
    arrays = {"n": np.array([len(files)], np.int64)}
    if hist is not None:
        arrays["hist"] = hist
    if gt_hist is not None:
        arrays["gt_hist"] = gt_hist
    if hist_out is not None:
        for ch in hist_out.counts:
            arrays[f"out_{ch}"], arrays[f"gt_{ch}"] = hist_out.counts[ch], hist_gt.counts[ch]
    if metrics is not None:
        arrays["metrics"] = metrics.as_array()
    if mpass is not None:
        arrays.update(mpass.state())
    objects: dict[str, Any] = {}
    if fpass is not None:
        from p2ptools.eval.fidelity import fidelity_context, merge_objects

        arrays.update(fpass.state())
        objects = merge_objects(gather_objects(fpass.objects()))
    arrays = dict(zip(arrays, sum_across_ranks(list(arrays.values())), strict=True))

    context = {
        "name": name or results.folder.name, "results": str(results.folder), "classes": classes.to_dict(),
        "fcn": options.fcn, "seg": options.seg, "ground_truth_row": options.ground_truth_row, "color": options.color,
        "metrics": bool(metrics is not None), "labels": labels.describe() if labels is not None else None,
        "photos": photos.describe() if photos is not None else None, "scorer_info": scorer_info, "bins": options.bins.to_dict(),
        "fidelity": fidelity_context(fidelity) if fpass is not None else None, "real_sizes": sorted(real_sizes),
        "samples": options.samples, "split": evaluated_split(results, options),
    }  # fmt: skip
    if shard is None:  # torchrun ranks: every rank shows the samples one process shows
        from p2ptools.eval.partial import merge_samples

        samples = merge_samples(gather_objects(samples), options.samples)
    if mpass is not None:
        context["miou"] = mpass.context()
    gallery = []
    if fpass is not None and fid_opts.lpips and (rank == 0 or shard is not None):
        by_stem = {p.stem: p for p in results.files}
        for stem, value in worst_lpips(objects["per_image"], fid_opts.gallery):
            path = by_stem[stem]
            gallery.append({"name": stem, "value": value, "input": _thumb(_input_image(results, photos, path)), "output": _thumb(read_image(path)), "truth": _thumb(photos.photo(path))})
    partial = Partial(context, arrays, objects, samples, gallery, shard or (0, 1), [p.stem for p in files])
    if shard is not None:
        return Evaluation(context["name"], {"name": context["name"], "results": context["results"], "n_images": int(arrays["n"][0])}, partial=partial)
    return build_evaluation(partial, fpass.feature_dir if fpass is not None else None, verbose=rank == 0)


def evaluated_split(results: ResultSet, options: EvalOptions) -> str | None:
    """The dataset split the results are scored on: ``--split``, else ``--data``'s evaluation split,
    else the split the results were translated from (their translate.json), else None (unknown)."""
    if options.split:
        return options.split
    if options.data:
        return evaluation_split(options.data)
    return results.info.get("split")


def worst_lpips(per_image: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` highest per-image LPIPS values, worst first."""
    from p2ptools.eval.fidelity import worst_images

    return worst_images(per_image, k)


def gather_objects(item: Any) -> list[Any]:
    """``item`` of every rank (``all_gather_object``); ``[item]`` with one process."""
    _, world = distributed_context()
    if world == 1:
        return [item]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, item)
    return out
