"""pix2pixHD inputs: label maps one-hot encoded, instance boundary maps, and the training data.

A dataset is the aligned A|B format plus, for label inputs, the extras a builder wrote beside the
pairs (``p2ptools make-dataset cityscapes --ids-extras``)::

    <root>/<split>/<name>.<ext>              A|B pair: the target half is the network's target
    <root>/label_ids/<split>/<name>.png      label ids (0 .. label_nc - 1), used when label_nc > 0
    <root>/instance_ids/<split>/<name>.png   instance ids (8- or 16-bit), used with --instance

With ``label_nc`` 0 the input half of the pair is the input image. Samples are handed over packed:
``"A"`` holds the input as integers, (1, H, W) label ids or (C, H, W) image values, plus one channel
of instance ids with ``instance``; :func:`encode_input` turns a batch of them into the network's
float input on the training device. Jitter (resize, crop, flip) is the same for the photo and the
maps (photos area/bicubic, maps nearest-neighbour) and is seeded by ``(seed, epoch, index)``, like
:class:`p2ptools.training.data.AlignedPairs`, so exact resume holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from p2ptools.errors import InputFileError, P2PError
from p2ptools.imageio import decode_image, read_image
from p2ptools.labels import CITYSCAPES, IGNORE, ClassTable
from p2ptools.pairs import split_pair
from p2ptools.training.data import resize, to_gray, to_network_range

LABEL_DIR, INSTANCE_DIR = "label_ids", "instance_ids"


# --- encoding on the device --------------------------------------------------------------------


def one_hot(labels: torch.Tensor, label_nc: int) -> torch.Tensor:
    """(N, 1, H, W) integer label ids -> (N, label_nc, H, W) float one-hot maps.

    Raises ValueError for ids outside ``0 .. label_nc - 1`` (the values found).
    """
    ids = labels.long()
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= label_nc:
        raise ValueError(f"label ids {low}..{high} do not fit --label-nc {label_nc} (ids must be 0..{label_nc - 1})")
    out = torch.zeros((ids.shape[0], label_nc, *ids.shape[2:]), dtype=torch.float32, device=ids.device)
    return out.scatter_(1, ids, 1.0)


def instance_edges(instances: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) instance ids -> (N, 1, H, W) float map: 1 where a pixel's id differs from one of
    its 4-neighbours, else 0 (both pixels of each differing pair are edges)."""
    t = instances
    edge = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    horizontal = t[..., :, 1:] != t[..., :, :-1]
    vertical = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.float()


def input_channels(label_nc: int, input_nc: int, instance: bool) -> int:
    """Channels of the generator's input: label classes (or image channels) plus one edge channel."""
    return (label_nc if label_nc else input_nc) + (1 if instance else 0)


def encode_input(packed: torch.Tensor, label_nc: int, instance: bool) -> torch.Tensor:
    """A packed batch ``"A"`` (N, C, H, W) integers -> the generator's float input.

    Label ids become one-hot maps (``label_nc`` > 0) or image values become [-1, 1]; with
    ``instance`` the last channel (instance ids) becomes the boundary map.
    """
    body, inst = (packed[:, :-1], packed[:, -1:]) if instance else (packed, None)
    x = one_hot(body, label_nc) if label_nc else to_network_range(body.to(torch.uint8))
    if inst is not None:
        x = torch.cat([x, instance_edges(inst)], dim=1)
    return x


# --- geometry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HDJitter:
    """Resize / crop / flip of a sample (the official ``resize_or_crop`` modes).

    ``none`` keeps the size; ``scale_width`` resizes to width ``load_size`` (aspect kept);
    ``crop`` takes a random ``crop_size`` square; ``scale_width_and_crop`` does both. ``train=False``
    is deterministic: no flip and centre crops.
    """

    mode: str = "scale_width"
    load_size: int = 1024
    crop_size: int = 512
    flip: bool = True
    train: bool = True

    def apply(self, images: Sequence[np.ndarray], maps: Sequence[np.ndarray], rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Jitter photos (``images``, smooth resizing) and id maps (``maps``, nearest) of one size alike."""
        h, w = (images or maps)[0].shape[:2]
        images, maps = list(images), list(maps)
        if self.mode in ("scale_width", "scale_width_and_crop") and w != self.load_size:
            tw, th = self.load_size, max(1, round(self.load_size * h / w))
            images = [resize(im, tw, th) for im in images]
            maps = [cv2.resize(m, (tw, th), interpolation=cv2.INTER_NEAREST) for m in maps]
            h, w = th, tw
        if self.mode in ("crop", "scale_width_and_crop"):
            c = self.crop_size
            if h < c or w < c:
                raise ValueError(f"image {w}x{h} is smaller than --crop-size {c}")
            y, x = (int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))) if self.train else ((h - c) // 2, (w - c) // 2)
            images = [im[y : y + c, x : x + c] for im in images]
            maps = [m[y : y + c, x : x + c] for m in maps]
        if self.train and self.flip and rng.random() < 0.5:
            images = [im[:, ::-1] for im in images]
            maps = [m[:, ::-1] for m in maps]
        return images, maps


# --- the dataset --------------------------------------------------------------------------------


def extra_path(pair: Path, kind: str) -> Path:
    """``<root>/<split>/<name>.<ext>`` -> ``<root>/<kind>/<split>/<name>.png``."""
    pair = Path(pair)
    return pair.parent.parent / kind / pair.parent.name / f"{pair.stem}.png"


def read_id_map(path: Path) -> np.ndarray:
    """An 8- or 16-bit single-channel id map as int32 (H, W); anything else is an InputFileError."""
    image = read_image(path, mode="unchanged")
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise InputFileError(path, f"expected a single-channel 8- or 16-bit id map, got shape {image.shape} {image.dtype}")
    return image.astype(np.int32)


def read_pair_map(pair: Path, kind: str, halves: tuple[int, int], label_nc: int | None = None) -> np.ndarray:
    """The ``kind`` map of ``pair`` (:func:`extra_path`), checked: single-channel 8/16-bit, the size
    ``halves`` (H, W) of the pair's halves and, with ``label_nc``, every id below it."""
    path = extra_path(pair, kind)
    ids = read_id_map(path)
    if ids.shape != tuple(halves):
        raise InputFileError(path, f"size {ids.shape[1]}x{ids.shape[0]} differs from its pair's halves {halves[1]}x{halves[0]}")
    if label_nc is not None and ids.size and int(ids.max()) >= label_nc:
        raise InputFileError(path, f"label id {int(ids.max())} does not fit --label-nc {label_nc}")
    return ids


class HDPairs(Dataset):
    """Samples ``{"A": packed input (C, H, W) int32 or uint8, "B": target (C, H, W) uint8, "index"}``.

    Indexed by ``(epoch, index)`` keys (:class:`p2ptools.training.data.ResumableSampler`) or plain
    indices; a sample that cannot be loaded becomes ``{"error": message}`` (see
    :func:`p2ptools.training.data.collate_pairs`, which stacks these samples too).
    """

    def __init__(self, files: Sequence[Path], jitter: HDJitter, *, label_nc: int, instance: bool, direction: str = "AtoB",
                 input_nc: int = 3, output_nc: int = 3, seed: int = 0) -> None:
        self.files = [Path(f) for f in files]
        self.jitter, self.label_nc, self.instance = jitter, label_nc, instance
        self.direction, self.input_nc, self.output_nc, self.seed = direction, input_nc, output_nc, seed

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, epoch: int = 0) -> dict:
        """Decode, check and jitter sample ``index`` as seen in ``epoch``. Raises :class:`InputFileError`."""
        path = self.files[index]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(path, f"cannot read ({exc.strerror})") from None
        a, b = split_pair(decode_image(data, str(path)), str(path))
        source, target = (b, a) if self.direction == "BtoA" else (a, b)
        maps = []
        if self.label_nc:
            maps.append(read_pair_map(path, LABEL_DIR, target.shape[:2], self.label_nc))
        if self.instance:
            maps.append(read_pair_map(path, INSTANCE_DIR, target.shape[:2]))
        images = [target] if self.label_nc else [target, source]
        try:
            images, maps = self.jitter.apply(images, maps, np.random.default_rng([self.seed, epoch, index]))
        except ValueError as exc:
            raise InputFileError(path, str(exc)) from None
        target = images[0] if self.output_nc == 3 else to_gray(np.ascontiguousarray(images[0]))[:, :, None]
        channels = [] if self.label_nc else [_hwc(images[1] if self.input_nc == 3 else to_gray(np.ascontiguousarray(images[1])))]
        channels += [m[:, :, None] for m in maps]
        packed = np.concatenate(channels, axis=2) if channels else None
        if self.label_nc or self.instance:
            a_tensor = torch.from_numpy(np.ascontiguousarray(packed.astype(np.int32).transpose(2, 0, 1)))
        else:
            a_tensor = torch.from_numpy(np.ascontiguousarray(packed.transpose(2, 0, 1)))
        return {"A": a_tensor, "B": torch.from_numpy(np.ascontiguousarray(_hwc(target).transpose(2, 0, 1))), "index": index}

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        try:
            return self.load(int(index), int(epoch))
        except P2PError as exc:
            return {"error": str(exc)}


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def label_palette(label_nc: int, classes: ClassTable = CITYSCAPES) -> np.ndarray:
    """(label_nc, 3) uint8 colors for showing label maps in sample grids: the label ids of
    ``classes`` (Cityscapes labelIds, what the builders' ``label_ids/`` hold) in their class colors,
    as in the dataset's own label pictures; ids outside the table (void) black."""
    ids = np.arange(max(label_nc, 1))
    train_ids = np.where(ids < 256, classes.id_lut()[np.minimum(ids, 255)], IGNORE)
    return classes.palette()[train_ids]


def input_preview(packed: torch.Tensor, label_nc: int, instance: bool) -> np.ndarray:
    """One packed sample (C, H, W) -> an RGB uint8 picture: labels in palette colors (or the image),
    instance boundaries in white."""
    arr = packed.cpu().numpy()
    body = arr[:-1] if instance else arr
    if label_nc:
        picture = label_palette(label_nc)[np.clip(body[0], 0, label_nc - 1)]
    else:
        picture = np.repeat(body.transpose(1, 2, 0).astype(np.uint8), 3 // body.shape[0], axis=2)
    if instance:
        edges = instance_edges(torch.from_numpy(arr[-1:][None])).numpy()[0, 0] > 0
        picture = picture.copy()
        picture[edges] = 255
    return np.ascontiguousarray(picture)
