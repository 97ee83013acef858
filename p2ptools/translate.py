"""Translate images with a loaded run: plain images, folders, or aligned pairs.

Output layout (``OUT``)::

    OUT/<stem>.png            the translation of each input, named after it
    OUT/input/<stem>.png      with aligned pairs: the input half (for sample pages)
    OUT/target/<stem>.png     with aligned pairs: the other half, the ground truth for evaluation
    OUT/translate.json        run, direction, source, count, the skipped inputs and why

Safety: ``OUT`` is locked, must not be or hold an input, and is never a foreign folder; an existing
translation folder is replaced only with ``overwrite``. Everything is written into
``.<name>.p2ptools-new`` beside ``OUT`` and swapped in when complete, so a failure leaves neither
half-written files nor an empty folder. Two inputs with one stem (``x.jpg``, ``x.png``) are an error
naming both.

Inputs are decoded as 8-bit RGB, as ``combine`` reads them (gray and 16-bit images converted, alpha
dropped), then converted to the model's channels the way the pix2pix reference does (ITU-R 601
luma for one-channel models). Sizes the network cannot take are an error unless ``fit`` says
``"resize"`` (to ``size`` x ``size``, the output at that size) or ``"pad"`` (reflection-padded to the
network's multiple, the output cropped back to the input's size) or ``"tile"`` (any size, in
overlapping tiles of the network's multiple blended with a smooth window, :mod:`p2ptools.tiling`).

Models that take per-image maps besides the image (``TrainedModel.input_extras``, e.g. pix2pixHD's
``label_ids`` and ``instance_ids``) get them from beside the inputs, where builders write extras:
``<dataset>/<kind>/<split>/<name>.png`` for ``<dataset>/<split>/<name>.<ext>``. They are resized
nearest-neighbour with ``--resize`` and padded like the image with ``--pad``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import decode_image, header_size, is_image_name, write_image, write_text_atomic
from p2ptools.locks import output_lock
from p2ptools.options import SIZE, check_ranges
from p2ptools.outputs import OutputKind, check_folder_path, discard, refuse_foreign, refuse_overlap, refuse_unrecorded, seal, staging_path, swap_in
from p2ptools.pairs import MANIFEST_NAME, SPLITS, dataset_splits, evaluation_split, split_pair
from p2ptools.plugin import TrainedModel
from p2ptools.progress import make_progress

INFO_NAME = "translate.json"
#: A translation folder (``p2ptools.outputs``): its ownership record lists every file written.
TRANSLATION = OutputKind("translation", (INFO_NAME,), label="translation folder")


@dataclass(frozen=True)
class TranslateInputs:
    """Resolved inputs: the image files and whether they are aligned A|B pairs."""

    files: list[Path]
    aligned: bool
    dataset_root: Path | None
    #: the ``--input`` path as given (an output must not be it, be inside it or hold it)
    source: Path | None = None
    #: the dataset split the files are from (None: not a dataset's split folder)
    split: str | None = None


@dataclass(frozen=True)
class Fit:
    """How to treat sizes the network cannot take: ``mode`` None (an error), ``"resize"`` (to
    ``size`` x ``size``), ``"pad"`` (to the network's multiple, cropped back after) or ``"tile"``
    (``tile`` x ``tile`` tiles overlapping by ``overlap``, :mod:`p2ptools.tiling`)."""

    mode: str | None = None
    size: int | None = field(default=None, metadata={"flag": "--resize", "range": SIZE})
    tile: int | None = None
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.mode not in (None, "resize", "pad", "tile"):
            raise ConfigError(f"fit must be None, 'resize', 'pad' or 'tile', got {self.mode!r}")
        if self.mode == "resize" and self.size is None:
            raise ConfigError("--resize needs a size in pixels")
        if self.mode == "tile" and (self.tile is None or self.tile < 1 or not 0 <= self.overlap < self.tile):
            raise ConfigError(f"--tile must be a positive size and --overlap at least 0 and below it, got {self.tile} and {self.overlap}")
        check_ranges(self)

    def record(self) -> dict | None:
        """What translate.json records."""
        if self.mode == "tile":
            return {"mode": "tile", "tile": self.tile, "overlap": self.overlap}
        return {"mode": self.mode, "size": self.size} if self.mode else None


def resolve_inputs(path: Path, *, split: str | None = None, aligned: bool | None = None) -> TranslateInputs:
    """Find the images to translate.

    ``path`` is an image file, a folder of images, an aligned dataset root (its ``split`` folder is
    used; None = :func:`p2ptools.pairs.evaluation_split`, test when it exists, else val) or a split
    folder. Two images with one stem are an error. ``aligned=None`` detects A|B pairs
    (:func:`detect_pairs`); when it cannot tell, it raises a ConfigError asking for ``--aligned``
    or ``--plain``.
    """
    path = source = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    root, used_split = None, None
    if path.is_file():
        files = [path]
        if _is_split_folder(path.parent):
            root, used_split = path.parent.parent, path.parent.name
    else:
        if (path / MANIFEST_NAME).exists() or dataset_splits(path):
            used_split = split or evaluation_split(path)
            if not (path / used_split).is_dir():
                raise InputFileError(path, f"dataset has no {used_split!r} split (it has: {', '.join(dataset_splits(path)) or 'none'}; "
                                           "choose one with --split)")
            root, path = path, path / used_split
        elif _is_split_folder(path):
            root, used_split = path.parent, path.name
        files = sorted(p for p in path.iterdir() if is_image_name(p.name) and not p.name.startswith(".") and not p.is_dir())
        if not files:
            raise InputFileError(path, "no images found")
    seen: dict[str, Path] = {}
    for file in files:
        if file.stem in seen:
            raise InputFileError(file, f"has the same name as {seen[file.stem]}: both would be translated to "
                                       f"{file.stem}.png; rename one or translate them separately")
        seen[file.stem] = file
    if aligned is None:
        aligned = detect_pairs(files, root)
    return TranslateInputs(files, aligned, root, source, used_split)


def _is_split_folder(folder: Path) -> bool:
    """``folder`` is a dataset's split: its parent holds ``manifest.json``, or it is named like a
    split and a sibling split folder exists (the reference's ``combine_A_and_B.py`` layout)."""
    parent = folder.parent
    if (parent / MANIFEST_NAME).exists():
        return True
    return folder.name in SPLITS and any((parent / s).is_dir() for s in SPLITS if s != folder.name)


def detect_pairs(files: Sequence[Path], root: Path | None) -> bool:
    """Whether ``files`` are A|B pairs, from where they are and their sizes (headers only).

    A dataset's split folder (``root`` set: beside ``manifest.json`` or other split folders) holds
    pairs, whatever their aspect (pix2pixHD's halves are 2:1). Elsewhere the images must agree with
    each other: all exactly twice as wide as high is a folder of pairs, none of them is plain images.
    Anything else (a mix of shapes, a single 2:1 image outside a dataset) is a ConfigError asking
    for ``--aligned`` or ``--plain``.
    """
    if root is not None:  # a dataset's split folder (manifest, or beside other split folders)
        return True
    doubles = [_is_double_width(f) for f in files]
    where = f"{files[0].parent}" if len(files) > 1 else f"{files[0]}"
    if all(doubles) and len(files) > 1:
        return True
    if not any(doubles):
        return False
    if len(files) == 1:
        why = "one image twice as wide as high, outside a dataset"
    else:
        why = f"{doubles.count(True)} of its {len(files)} images are twice as wide as high, the others not"
    raise ConfigError(f"--input {where}: cannot tell A|B pairs from plain images ({why}); "
                      "say --aligned (translate the input half of each pair) or --plain (translate whole images)")


def _is_double_width(path: Path) -> bool:
    """The image's width is exactly twice its height (from the header; decoded when it has none)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror})") from None
    size = header_size(data) if data else None
    if size is None and data:
        try:
            image = decode_image(data, str(path))
            size = (image.shape[1], image.shape[0])
        except InputFileError:
            return False  # an unreadable file is reported (or skipped) when it is translated
    return size is not None and size[0] == 2 * size[1]


def _to_model_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """RGB (H, W, 3) -> the model's channels: RGB as is, or ITU-R 601 luma (H, W) like the reference."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if channels == 1 else image


def _fit_resize(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC)


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Reflection-pad the bottom and right of ``image`` (H, W[, C]) to multiples of ``multiple``."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return image
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="reflect" if min(h, w) > 1 else "edge")


def extra_path(path: Path, kind: str) -> Path:
    """Where a builder writes the ``kind`` map of the input ``<root>/<split>/<name>.<ext>``."""
    return path.parent.parent / kind / path.parent.name / f"{path.stem}.png"


def _load_extras(path: Path, model: TrainedModel, size: tuple[int, int], fit: Fit) -> dict[str, np.ndarray]:
    """The maps ``model.input_extras`` names for the input ``path`` (2-D, of the input's size)."""
    extras = {}
    for kind in model.input_extras:
        file = extra_path(path, kind)
        if not file.is_file():
            raise InputFileError(path, f"the model needs its {kind} map {file} (written beside the pairs by the dataset's builder)")
        data = file.read_bytes()
        image = decode_image(data, str(file), mode="unchanged") if data else None
        if image is None or image.ndim != 2:
            raise InputFileError(file, f"expected a single-channel {kind} map, got shape {getattr(image, 'shape', None)}")
        if image.shape != size:
            raise InputFileError(file, f"size {image.shape[1]}x{image.shape[0]} differs from its input's {size[1]}x{size[0]}")
        if fit.mode == "resize":
            image = cv2.resize(image, (fit.size, fit.size), interpolation=cv2.INTER_NEAREST)
        extras[kind] = image
    return extras


def _load_input(path: Path, model: TrainedModel, aligned: bool, fit: Fit) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror})") from None
    if not data:
        raise InputFileError(path, "empty file")
    # 8-bit RGB, as combine reads images; pairs in their stored layout (EXIF orientation ignored, as
    # the reference and training read them), plain photos upright (EXIF applied)
    image = decode_image(data, str(path), exif_orientation=not aligned)
    tgt = None
    if aligned:
        a, b = split_pair(image, str(path))
        image, tgt = (a, b) if model.direction == "AtoB" else (b, a)
    extras = _load_extras(path, model, image.shape[:2], fit) if getattr(model, "input_extras", ()) else {}
    if fit.mode == "resize":
        image = _fit_resize(image, fit.size)
        tgt = _fit_resize(tgt, fit.size) if tgt is not None else None
    return _to_model_channels(image, model.in_channels), tgt, extras


def _batches(files: Sequence[Path], model: TrainedModel, aligned: bool, batch_size: int, fit: Fit,
             skipped: list[dict[str, str]] | None) -> Iterator[list[tuple[Path, np.ndarray, np.ndarray | None, dict]]]:
    batch: list[tuple[Path, np.ndarray, np.ndarray | None, dict]] = []
    for path in files:
        try:
            src, tgt, extras = _load_input(path, model, aligned, fit)
        except InputFileError as exc:
            if skipped is None:
                raise
            skipped.append({"file": str(path), "error": exc.problem})
            continue
        if batch and (len(batch) == batch_size or batch[0][1].shape != src.shape):
            yield batch
            batch = []
        batch.append((path, src, tgt, extras))
    if batch:
        yield batch


def _run_model(model: TrainedModel, images: list[np.ndarray], extras: list[dict[str, np.ndarray]], fit: Fit,
               batch_size: int = 1) -> list[np.ndarray]:
    if fit.mode == "tile":
        from p2ptools.tiling import Tiling, translate_tiled

        tiling = Tiling(fit.tile, fit.overlap, max(1, model.size_multiple))
        with_extras = bool(getattr(model, "input_extras", ()))

        def run(tiles: list[np.ndarray], maps: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
            return model.translate(tiles, maps) if with_extras else model.translate(tiles)
        return [translate_tiled(image, run, tiling, batch_size=batch_size, extras=ex) for image, ex in zip(images, extras, strict=True)]
    pad = fit.mode == "pad" and model.size_multiple > 1
    if pad:
        h, w = images[0].shape[:2]
        images = [pad_to_multiple(image, model.size_multiple) for image in images]
        extras = [{k: pad_to_multiple(v, model.size_multiple) for k, v in e.items()} for e in extras]
    results = model.translate(images, extras) if getattr(model, "input_extras", ()) else model.translate(images)
    return [np.ascontiguousarray(r[:h, :w]) for r in results] if pad else results


def check_output(output: Path, inputs: TranslateInputs, *, overwrite: bool) -> None:
    """Refuse an output that is a file, is or holds or sits inside an input, is a foreign folder,
    or holds translations already (unless ``overwrite``). Writes nothing."""
    check_folder_path(output, "--output")
    refuse_overlap(output, [inputs.source, inputs.dataset_root, *inputs.files], "--output")
    state = refuse_foreign(output, TRANSLATION, "--output")
    if state == "ours":
        if not overwrite:
            raise ConfigError(f"--output {output}: holds translations already ({INFO_NAME}); use --overwrite to replace them "
                              "or choose another --output")
        refuse_unrecorded(output, "--output")


def translate_files(
    model: TrainedModel,
    inputs: TranslateInputs,
    output: Path,
    *,
    batch_size: int = 1,
    progress: bool = True,
    run_dir: Path | None = None,
    overwrite: bool = False,
    skip_bad: bool = False,
    fit: Fit | None = None,
    requested_epoch: str = "latest",
    notice: Callable[[str], None] | None = None,
) -> int:
    """Translate ``inputs`` into ``output`` (layout and rules in the module docstring); returns the count.

    Args:
        overwrite: replace a translation folder written before.
        skip_bad: skip unreadable inputs and inputs the network cannot take, listing each with its
            reason under ``"skipped"`` in ``translate.json``, instead of stopping at the first.
        fit: what to do with sizes the network cannot take (:class:`Fit`).
        requested_epoch: the ``--epoch`` the model was loaded with (recorded in translate.json).
        notice: called once with a hint when an input is too large to translate whole comfortably
            (:func:`p2ptools.tiling.size_hint`) and ``fit`` does not tile.
    """
    output, fit = Path(output), fit or Fit()
    check_output(output, inputs, overwrite=overwrite)
    with output_lock(output):
        check_output(output, inputs, overwrite=overwrite)  # again, now that no other process can change it
        staging = staging_path(output)
        discard(staging)  # an unfinished earlier attempt of ours
        try:
            count, skipped = _translate_into(model, inputs, staging, batch_size, progress, skip_bad, fit, notice)
            info = {
                "run_dir": str(run_dir) if run_dir else None,
                "weights": model.weights,
                "epoch": model.epoch,
                "epoch_requested": requested_epoch,
                "direction": model.direction,
                "aligned": inputs.aligned,
                "dataset": str(inputs.dataset_root) if inputs.dataset_root else None,
                "split": inputs.split,
                "device": str(model.device) if getattr(model, "device", None) is not None else None,
                "count": count,
                "fit": fit.record(),
                "backend": getattr(model, "backend", {"name": "torch"}),
                "skipped": skipped,
            }
            write_text_atomic(staging / INFO_NAME, json.dumps(info, indent=1) + "\n")
            seal(staging, TRANSLATION)
            swap_in(staging, output)
        finally:
            discard(staging)
    return count


def _translate_into(model: TrainedModel, inputs: TranslateInputs, folder: Path, batch_size: int, progress: bool,
                    skip_bad: bool, fit: Fit, notice: Callable[[str], None] | None = None) -> tuple[int, list[dict[str, str]]]:
    from p2ptools.tiling import size_hint

    folder.mkdir(parents=True, exist_ok=True)
    count, skipped = 0, []
    hinted = fit.mode == "tile" or notice is None
    with make_progress(progress) as bar:
        task = bar.add_task("translate", total=len(inputs.files))
        for batch in _batches(inputs.files, model, inputs.aligned, batch_size, fit, skipped if skip_bad else None):
            large = None if hinted else size_hint(*batch[0][1].shape[:2])
            if large:
                notice(f"hint: {batch[0][0]}: {large}")
                hinted = True
            try:
                results = _run_model(model, [src for _, src, _, _ in batch], [ex for *_, ex in batch], fit, batch_size)
            except InputFileError as exc:  # the model cannot name the file; the batch shares one size
                hint = "" if fit.mode else "; translate with --pad does that and crops each output back to its input's size (or --tile T, or --resize N)"
                if not skip_bad:
                    raise InputFileError(batch[0][0], exc.problem + hint) from None
                skipped += [{"file": str(path), "error": exc.problem} for path, *_ in batch]
                bar.advance(task, len(batch))
                continue
            for (path, src, tgt, _), result in zip(batch, results, strict=True):
                write_image(folder / f"{path.stem}.png", result)
                if tgt is not None:
                    write_image(folder / "input" / f"{path.stem}.png", src)
                    write_image(folder / "target" / f"{path.stem}.png", tgt)
                count += 1
            bar.advance(task, len(batch))
    if not count:
        raise InputFileError(inputs.source or inputs.files[0], f"no input could be translated ({len(skipped)} skipped, "
                             f"first: {skipped[0]['file']}: {skipped[0]['error']})" if skipped else "no inputs")
    return count, sorted(skipped, key=lambda s: s["file"])
