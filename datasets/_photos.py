"""Shared helpers of the photo-folder builders (``inpainting``, ``colorization``): listing photos in a
source tree, unique output names, seeded splits and the square resize/crop rule."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

import cv2
import numpy as np

from p2ptools.buildkit import SourceTree, job_rng
from p2ptools.errors import ConfigError
from p2ptools.imageio import is_image_name


def list_photos(tree: SourceTree) -> list[str]:
    """Image names in ``tree`` (sorted), without hidden files and macOS resource forks."""
    out = []
    for name in tree.names():
        parts = name.split("/")
        if not is_image_name(name) or any(p.startswith(".") for p in parts) or "__MACOSX" in parts:
            continue
        out.append(name)
    return out


def output_names(names: Sequence[str]) -> dict[str, str]:
    """Source name -> output name: the file stem, or the whole path (``/`` -> ``__``) where stems collide."""
    stems: dict[str, int] = {}
    for name in names:
        stem = posixpath.splitext(posixpath.basename(name))[0]
        stems[stem] = stems.get(stem, 0) + 1
    out = {}
    for name in names:
        stem = posixpath.splitext(posixpath.basename(name))[0]
        out[name] = stem if stems[stem] == 1 else posixpath.splitext(name)[0].replace("/", "__")
    return {k: re.sub(r"[^\w.\-+=,@]", "_", v) for k, v in out.items()}


def check_fraction(flag: str, value: float) -> None:
    """A split fraction must lie in [0, 1)."""
    if not 0 <= value < 1:
        raise ConfigError(f"{flag} must be in [0, 1), got {value}")


def seeded_splits(names: Sequence[str], seed: int, key: str, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Assign ``names`` to train/val/test: a permutation seeded by ``(seed, key)``; the first
    ``round(n * test_fraction)`` go to test, the next ``round(n * val_fraction)`` to val, the rest to train."""
    check_fraction("--val-fraction", val_fraction)
    check_fraction("--test-fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise ConfigError("--val-fraction + --test-fraction must leave images for train")
    ordered = sorted(names)
    n_test, n_val = round(len(ordered) * test_fraction), round(len(ordered) * val_fraction)
    perm = job_rng(seed, key, "splits").permutation(len(ordered))
    out = {}
    for rank, idx in enumerate(perm):
        out[ordered[int(idx)]] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
    return out


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size`` (area filter when shrinking, cubic when enlarging), then
    crop the centred ``size`` x ``size`` square.

    Args:
        image: (H, W) or (H, W, 3) uint8.
        size: output side in pixels.

    Returns:
        (size, size[, 3]) uint8. A 936x537 Paris StreetView photo at 256 becomes 446x256, cropped at
        x in [95, 351).
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])
