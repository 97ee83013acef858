"""Translate images with a loaded run: plain images, folders, or aligned pairs.

Output layout (``OUT``)::

    OUT/<stem>.png            the translation of each input, named after it
    OUT/input/<stem>.png      with aligned pairs: the input half (for sample pages)
    OUT/target/<stem>.png     with aligned pairs: the other half, the ground truth for evaluation
    OUT/translate.json        run, direction, source and count
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2ptools.errors import InputFileError
from p2ptools.imageio import decode_image, is_image_name, write_image, write_text_atomic
from p2ptools.pairs import MANIFEST_NAME, split_pair
from p2ptools.plugin import TrainedModel
from p2ptools.progress import make_progress


@dataclass(frozen=True)
class TranslateInputs:
    """Resolved inputs: the image files and whether they are aligned A|B pairs."""

    files: list[Path]
    aligned: bool
    dataset_root: Path | None


def resolve_inputs(path: Path, *, split: str = "test", aligned: bool | None = None) -> TranslateInputs:
    """Find the images to translate.

    ``path`` is an image file, a folder of images, an aligned dataset root (its ``split`` folder is
    used) or a split folder. ``aligned=None`` detects pairs: a dataset with ``manifest.json`` or
    split folders is aligned, a plain folder is not.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    root = None
    if path.is_file():
        files = [path]
        auto_aligned = (path.parent.parent / MANIFEST_NAME).exists()
    else:
        if (path / split).is_dir():
            root, path = path, path / split
        elif (path / MANIFEST_NAME).exists():
            raise InputFileError(path, f"dataset has no {split!r} split (choose one with --split)")
        elif (path.parent / MANIFEST_NAME).exists():
            root = path.parent
        files = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p.name) and not p.name.startswith("."))
        if not files:
            raise InputFileError(path, "no images found")
        auto_aligned = root is not None
    return TranslateInputs(files, auto_aligned if aligned is None else aligned, root)


def _load_input(path: Path, model: TrainedModel, aligned: bool) -> tuple[np.ndarray, np.ndarray | None]:
    data = path.read_bytes() if path.exists() else b""
    if not data:
        raise InputFileError(path, "missing or empty file")
    if aligned:
        a, b = split_pair(decode_image(data, str(path)), str(path))
        src, tgt = (a, b) if model.direction == "AtoB" else (b, a)
        if model.in_channels == 1:
            src = src[:, :, 0].copy() if _is_gray(src) else _fail_channels(path, 3, 1)
        return src, tgt
    image = decode_image(data, str(path), mode="unchanged")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3].copy()
    channels = 1 if image.ndim == 2 else 3
    if channels == 3 and model.in_channels == 1 and _is_gray(image):
        return image[:, :, 0].copy(), None
    if channels != model.in_channels:
        _fail_channels(path, channels, model.in_channels)
    return image, None


def _is_gray(image: np.ndarray) -> bool:
    return image.ndim == 2 or bool((image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all())


def _fail_channels(path: Path, got: int, want: int) -> np.ndarray:
    raise InputFileError(path, f"image has {got} channel(s) but the model takes {want}")


def _batches(files: Sequence[Path], model: TrainedModel, aligned: bool, batch_size: int) -> Iterator[list[tuple[Path, np.ndarray, np.ndarray | None]]]:
    batch: list[tuple[Path, np.ndarray, np.ndarray | None]] = []
    for path in files:
        src, tgt = _load_input(path, model, aligned)
        if batch and (len(batch) == batch_size or batch[0][1].shape != src.shape):
            yield batch
            batch = []
        batch.append((path, src, tgt))
    if batch:
        yield batch


def translate_files(
    model: TrainedModel,
    inputs: TranslateInputs,
    output: Path,
    *,
    batch_size: int = 1,
    progress: bool = True,
    run_dir: Path | None = None,
) -> int:
    """Translate ``inputs`` into ``output`` (layout in the module docstring); returns the count."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    count = 0
    with make_progress(progress) as bar:
        task = bar.add_task("translate", total=len(inputs.files))
        for batch in _batches(inputs.files, model, inputs.aligned, batch_size):
            try:
                results = model.translate([src for _, src, _ in batch])
            except InputFileError as exc:  # the model cannot name the file; the batch shares one size
                raise InputFileError(batch[0][0], exc.problem) from None
            for (path, src, tgt), result in zip(batch, results, strict=True):
                write_image(output / f"{path.stem}.png", result)
                if tgt is not None:
                    write_image(output / "input" / f"{path.stem}.png", src)
                    write_image(output / "target" / f"{path.stem}.png", tgt)
                count += 1
            bar.advance(task, len(batch))
    info = {
        "run_dir": str(run_dir) if run_dir else None,
        "direction": model.direction,
        "aligned": inputs.aligned,
        "dataset": str(inputs.dataset_root) if inputs.dataset_root else None,
        "count": count,
    }
    write_text_atomic(output / "translate.json", json.dumps(info, indent=1) + "\n")
    return count
