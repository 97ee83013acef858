"""Training and validation data of aligned pairs: decoded with OpenCV, jittered on uint8.

Each sample is decoded once (``cv2.imdecode``, EXIF orientation ignored as PIL and the reference
do), split into its A and B halves, resized (:mod:`~p2ptools.training.resize`: torchvision's
antialiased bicubic by default, PIL's algorithm, at most 2 gray levels from PIL), cropped and flipped while still uint8 (the same jitter for both halves, as in the reference), and handed over as
uint8 CHW tensors; conversion to float in [-1, 1] happens on the training device
(:func:`to_network_range`), so workers and the host-to-device copy move 4x fewer bytes.

Reproducibility: the jitter of a sample comes from its own generator seeded by ``(seed, epoch,
index)``, and the sampler (:class:`ResumableSampler`) yields ``(epoch, index)`` keys, so a batch does
not depend on the number of worker processes, on which worker made it, or on whether the run was
resumed in the middle of an epoch.

Example:
    >>> jitter = Jitter("resize_and_crop", load_size=36, crop_size=32, flip=True)
    >>> a = np.zeros((40, 40, 3), np.uint8)
    >>> jitter.apply(a, a, np.random.default_rng(0))[0].shape
    (32, 32, 3)
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from p2ptools.errors import InputFileError, P2PError
from p2ptools.imageio import check_complete, check_pixels, decode_image, header_size, opencv_single_threaded
from p2ptools.pairs import MANIFEST_NAME, iter_split, split_pair
from p2ptools.training.resize import RESIZE_BACKENDS, resize  # noqa: F401  (resize: public here too)

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


def scale_width_size(width: int, height: int, load_size: int, crop_size: int) -> tuple[int, int]:
    """The reference's ``scale_width``: width ``load_size``, aspect kept, height at least ``crop_size``."""
    if width == load_size and height >= crop_size:
        return width, height
    return load_size, max(int(round(load_size * height / width)), crop_size)


def power_of_two_size(width: int, height: int, base: int = 4) -> tuple[int, int]:
    """The reference's ``none`` mode: each side rounded to a multiple of ``base`` (at least ``base``)."""
    return max(base, int(round(width / base) * base)), max(base, int(round(height / base) * base))


@dataclass(frozen=True)
class Jitter:
    """Preprocessing of one pair (the same geometry for both halves).

    Modes (the reference's): ``resize_and_crop`` resizes to ``load_size`` square then crops
    ``crop_size`` at a random place; ``crop`` crops ``crop_size`` from the original; ``scale_width``
    scales to width ``load_size`` (aspect kept, height at least ``crop_size``);
    ``scale_width_and_crop`` does that and then crops ``crop_size`` at a random place; ``none`` only
    rounds sides to multiples of 4. ``train=False`` makes it deterministic: no flip, centre crops,
    and ``resize_and_crop`` / ``scale_width_and_crop`` scale to ``crop_size`` (square / width) first,
    so that validation sees the whole image (or its full width).
    """

    mode: str
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    train: bool = True
    resize_backend: str = "torchvision"

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {self.mode!r}")
        if self.resize_backend not in RESIZE_BACKENDS:
            raise ValueError(f"resize backend must be one of {RESIZE_BACKENDS}, got {self.resize_backend!r}")
        if self.mode in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            raise ValueError(f"load_size {self.load_size} is smaller than crop_size {self.crop_size}")

    def apply(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Jitter the halves ``a`` and ``b`` (uint8, same (H, W)) with ``rng``.

        Returns arrays that may be views of the inputs (copy them before writing into them).
        """
        if a.shape[:2] != b.shape[:2]:
            raise ValueError(f"halves differ in size: {a.shape} vs {b.shape}")
        h, w = a.shape[:2]
        size = None
        if self.mode == "resize_and_crop":
            side = self.load_size if self.train else self.crop_size
            size = (side, side)
        elif self.mode in ("scale_width", "scale_width_and_crop"):
            target = self.load_size if self.train or self.mode == "scale_width" else self.crop_size
            size = scale_width_size(w, h, target, self.crop_size)
        elif self.mode == "none":
            size = power_of_two_size(w, h)
        if size is not None:
            a, b = resize(a, *size, self.resize_backend), resize(b, *size, self.resize_backend)
        if self.mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
            h, w = a.shape[:2]
            c = self.crop_size
            if h < c or w < c:
                raise ValueError(f"image {w}x{h} is smaller than crop_size {c}")
            if self.train:
                y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            else:
                y, x = (h - c) // 2, (w - c) // 2
            a, b = a[y : y + c, x : x + c], b[y : y + c, x : x + c]
        if self.train and self.flip and rng.random() < 0.5:
            a, b = cv2.flip(a, 1), cv2.flip(b, 1)
        return a, b  # possibly views of the inputs (positive strides): to_chw makes the one copy


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> gray (H, W) with ITU-R 601 weights, exactly PIL's ``convert("L")``
    (its fixed point: ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``; OpenCV's 14-bit weights
    differ by 1 at some pixels)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    rgb = image.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> uint8 tensor (C, H, W)."""
    t = torch.from_numpy(image if all(st > 0 for st in image.strides) else np.ascontiguousarray(image))
    return t.unsqueeze(0).contiguous() if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def to_network_range(batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (any shape) -> float in [-1, 1] (``x / 127.5 - 1``, the reference's Normalize(0.5, 0.5))."""
    if batch.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {batch.dtype}")
    return batch.to(dtype).div_(127.5).sub_(1.0)


def to_uint8(batch: torch.Tensor) -> torch.Tensor:
    """Network output in [-1, 1] -> uint8 (rounded, clipped)."""
    return ((batch.detach().float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)


class AlignedPairs(Dataset):
    """The pairs of one split as uint8 tensors ``{"A": input (C, H, W), "B": target, "index"}``.

    ``A`` is always the network input: with ``direction="BtoA"`` it holds the right half. The input
    side becomes gray when ``input_nc == 1``, the target when ``output_nc == 1``. Items are fetched by
    ``(epoch, index)`` keys (see :class:`ResumableSampler`) or by a plain index (epoch 0).
    """

    def __init__(self, files: Sequence[Path], jitter: Jitter, *, direction: str = "AtoB", input_nc: int = 3,
                 output_nc: int = 3, seed: int = 0) -> None:
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        self.files = [Path(f) for f in files]
        self.jitter = jitter
        self.direction = direction
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.seed = seed

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, epoch: int = 0) -> dict[str, torch.Tensor | int]:
        """Decode and jitter pair ``index`` as it is seen in ``epoch``. Raises :class:`InputFileError`."""
        path = self.files[index]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(path, f"cannot read ({exc.strerror})") from None
        a, b = split_pair(decode_image(data, str(path), exif_orientation=False), str(path))  # stored layout, as PIL
        if self.direction == "BtoA":
            a, b = b, a
        # gray first, then resize, as the reference's transforms do (Grayscale before Resize): resizing
        # colour and then mixing the channels differs by up to 4 gray levels at colour edges
        if self.input_nc == 1:
            a = to_gray(a)
        if self.output_nc == 1:
            b = to_gray(b)
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            a, b = self.jitter.apply(a, b, rng)
        except ValueError as exc:
            raise InputFileError(path, str(exc)) from None
        return {"A": to_chw(a), "B": to_chw(b), "index": index}

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        try:
            return self.load(int(index), int(epoch))
        except P2PError as exc:  # crosses the worker boundary as data; see collate_pairs
            return {"error": str(exc)}


def collate_pairs(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack samples; a sample that failed to load (or a size mismatch) raises :class:`InputFileError`.

    Errors travel from worker processes as ``{"error": message}`` items, because DataLoader would
    otherwise wrap them in a multi-line RuntimeError.
    """
    for item in items:
        if "error" in item:
            return {"error": item["error"]}
    shapes = {tuple(item["A"].shape) for item in items}
    if len(shapes) > 1:
        return {"error": f"<batch>: pairs of different sizes {sorted(shapes)} in one batch; use --preprocess resize_and_crop or crop, or --batch-size 1"}
    return {
        "A": torch.stack([item["A"] for item in items]),
        "B": torch.stack([item["B"] for item in items]),
        "index": torch.tensor([item["index"] for item in items]),
    }


def check_batch(batch: dict) -> dict:
    """Raise the loading error a batch carries, else return it."""
    if "error" in batch:
        path, _, problem = batch["error"].partition(": ")
        raise InputFileError(path, problem or batch["error"])
    return batch


class ResumableSampler(DistributedSampler):
    """A :class:`DistributedSampler` that yields ``(epoch, index)`` keys and can skip ahead.

    The order is the DistributedSampler's (a permutation seeded by ``seed + epoch``, padded to a
    multiple of the number of replicas, rank ``r`` taking every ``num_replicas``-th index), so single-
    and multi-process runs shuffle the same way. :meth:`set_start` skips the first samples of the
    rank's share, to resume in the middle of an epoch; it applies to the next iteration only.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank in the next iteration."""
        self.start = int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start :]
        self.start = 0
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


def split_files(root: str | Path, split: str) -> list[Path]:
    """The pair files of a split; an empty split is an :class:`InputFileError`."""
    files = list(iter_split(root, split))
    if not files:
        raise InputFileError(Path(root) / split, "no image pairs in this split")
    return files


def check_dataset_folder(root: str | Path) -> None:
    """Raise :class:`InputFileError` unless ``root`` is a folder (naming what it is instead)."""
    root = Path(root)
    if root.is_file():
        raise InputFileError(root, "is a file; --data expects an aligned dataset folder (train/ [val/ test/] of A|B pair "
                                   "images, as `p2ptools make-dataset` writes)")
    if not root.is_dir():
        raise InputFileError(root, "no such dataset folder (expected train/ [val/ test/] of A|B pair images)")
    if root.name in ("train", "val", "test") and not (root / "train").is_dir():
        raise InputFileError(root, f"is the {root.name}/ split of a dataset; --data is the dataset root, the folder that "
                                   f"holds train/ [val/ test/]: --data {root.parent}")


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) of an encoded image: from its header, decoding only where it gives none."""
    size = header_size(data)
    if size is None:
        image = decode_image(data, name, exif_orientation=False)
        size = (image.shape[1], image.shape[0])
    return size


def check_pair_headers(files: Sequence[Path], jitter: Jitter) -> None:
    """Check every pair file before training touches anything: readable, complete (end marker),
    under the pixel limit, an even width, and halves large enough for ``jitter``'s crop.

    Reads each file once and decodes only those whose header gives no size; the first bad file
    raises :class:`InputFileError` naming it.

    A dataset without ``manifest.json`` (not written by a builder, e.g. the reference's
    ``combine_A_and_B.py`` output) holding images that are not twice as wide as high is checked
    for single images: when none of its first such images has halves that look aligned
    (:func:`halves_look_aligned`), it is refused with the command that makes pairs. A builder's
    dataset (with a manifest) is trusted (``--aspect keep`` halves are 2:1).
    """
    built: dict[Path, bool] = {}  # dataset root -> has a manifest
    unsure: dict[Path, list[Path]] = {}  # dataset root -> files without a manifest that are not 2:1
    for path in files:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputFileError(path, f"cannot read ({exc.strerror})") from None
        if not data:
            raise InputFileError(path, "empty file")
        check_complete(data, str(path))
        check_pixels(data, str(path))
        w, h = image_size(data, str(path))
        root = Path(path).parent.parent
        if root not in built:
            built[root] = (root / MANIFEST_NAME).is_file()
        if w % 2:
            raise InputFileError(path, f"width {w} is odd: not an A|B pair of two equal halves")
        if w != 2 * h and not built[root]:
            unsure.setdefault(root, []).append(Path(path))
        if jitter.mode == "crop" and (h < jitter.crop_size or w // 2 < jitter.crop_size):
            raise InputFileError(path, f"image {w // 2}x{h} is smaller than crop_size {jitter.crop_size}")
    for candidates in unsure.values():
        sample = candidates[:UNSURE_SAMPLE]
        if not any(halves_look_aligned(*split_pair(decode_image(Path(p).read_bytes(), str(p), exif_orientation=False), str(p)))
                   for p in sample):
            image = decode_image(Path(sample[0]).read_bytes(), str(sample[0]), exif_orientation=False)
            raise InputFileError(sample[0], f"{image.shape[1]}x{image.shape[0]} is not twice as wide as high and its halves do not "
                                            "look aligned: a single image, not an A|B pair (no manifest.json in its dataset); make pairs "
                                            "with `p2ptools make-dataset combine --source-a A/ --source-b B/ --out DIR`")


#: Images of a dataset without a manifest whose halves are compared before it is refused.
UNSURE_SAMPLE = 3


def halves_look_aligned(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two halves show the same scene in place (an A|B pair) rather than two parts of one
    image: their edge maps (Sobel magnitude) correlate at least 0.2, and at least 0.1 more than
    with the second half mirrored left-right or up-down (two unrelated halves correlate about
    equally either way). Halves without edges cannot be judged and count as aligned."""

    def edges(image: np.ndarray) -> np.ndarray:
        gray = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
        return np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)).ravel()

    def corr(u: np.ndarray, v: np.ndarray) -> float:
        u, v = u - u.mean(), v - v.mean()
        denom = float(np.sqrt((u * u).sum() * (v * v).sum()))
        return float((u * v).sum()) / denom if denom > 0 else float("nan")

    ea, eb = edges(a), edges(b)
    same = corr(ea, eb)
    if np.isnan(same):
        return True
    mirrored = max(corr(ea, edges(b[:, ::-1])), corr(ea, edges(b[::-1])))
    return same >= 0.2 and same >= mirrored + 0.1


def check_pair_size(path: Path, jitter: Jitter) -> None:
    """Decode one pair and check it fits the preprocessing (even width, large enough to crop)."""
    dataset = AlignedPairs([path], jitter)
    item = dataset[0]
    if "error" in item:
        check_batch(item)


def _worker_init(worker_id: int) -> None:
    """One thread per worker for OpenCV and torch (the workers are the parallelism), and SIGINT left
    to the main process: a terminal's Ctrl-C reaches the whole process group, and a worker killed by
    it would make the loader fail before the main process saves its checkpoint. SIGTERM keeps its
    default action, because the loader stops its workers with it."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _ForkSafeLoader(DataLoader):
    """A DataLoader that forks its workers with OpenCV single-threaded (see
    :func:`p2ptools.imageio.opencv_single_threaded`): a process that used OpenCV's thread pool
    before, such as a notebook or a test session, would otherwise hang its workers at start."""

    def __iter__(self):
        with opencv_single_threaded():
            return super().__iter__()


def make_loader(dataset: AlignedPairs, *, batch_size: int, workers: int, sampler: ResumableSampler | None,
                pin_memory: bool, seed: int = 0) -> DataLoader:
    """A DataLoader over ``dataset`` with worker processes, pinned memory and persistent workers.

    ``sampler`` None means validation order (plain indices, no shuffling). The loader's own generator
    is seeded, so creating it never draws from the global torch RNG (that would shift dropout masks).
    """
    generator = torch.Generator().manual_seed(seed)
    return _ForkSafeLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        collate_fn=collate_pairs,
        worker_init_fn=_worker_init if workers > 0 else None,
        drop_last=False,
        generator=generator,
    )
