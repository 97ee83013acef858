"""The ``inpainting`` builder: B = a photo, A = the same photo with a hole; the hole mask is saved.

Photos come from any folder or archive (any depth). The Paris StreetView layout is recognised:
``paris_eval/paris_eval_gt/NNN_im.png`` go to ``test/`` and everything else (``paris_train_original/
*.JPG``, 936x537) to train/val with the seed; other sources are split train/val/test with the seed.

Every photo is resized so its short side is ``--size`` and the centred square is cropped (a 936x537
photo at 256 becomes 446x256 cropped at x in [95, 351)). Holes:

- ``--hole center`` (default): pix2pix's square centre ``[size/4, 3*size/4)`` on both axes, i.e. the
  white 128x128 centre at 256.
- ``--hole random``: 1 to ``--max-holes`` axis-aligned rectangles, each side uniform in
  ``[size/8, size/2]``, at uniform positions, drawn from ``job_rng(seed, split, name)``.

``--fill white`` (default, 255), ``mean`` (the context-encoder colour (117, 104, 123)) or ``noise``
(uniform 0-255 per pixel and channel, from the same generator). ``masks/<split>/<name>.png`` is 255
inside the hole and 0 outside, so the evaluator can score the hole only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from p2ptools_datasets._photos import check_fraction, list_photos, output_names, resize_center_crop, seeded_splits

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, job_rng, open_sources
from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import decode_image
from p2ptools.options import Range

MEAN_FILL = (117, 104, 123)  # context encoders' fill colour
PARIS_EVAL = "paris_eval_gt/"


@dataclass(frozen=True)
class InpaintingOptions:
    """Options of :class:`InpaintingBuilder`."""

    hole: str = field(default="center", metadata={"help": "Hole shape.", "choices": ("center", "random")})
    fill: str = field(default="white", metadata={"help": "Hole fill: white, the context-encoder mean colour, or noise.", "choices": ("white", "mean", "noise")})
    max_holes: int = field(default=3, metadata={"range": (1, 64), "help": "--hole random: at most this many rectangles per image."})
    val_fraction: float = field(default=0.05, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of (training) photos put in val/."})
    test_fraction: float = field(default=0.05, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction put in test/ (ignored when Paris StreetView eval images are present)."})


def center_hole(size: int) -> np.ndarray:
    """(size, size) uint8 mask, 255 on ``[size//4, 3*size//4)`` on both axes (pix2pix's centre hole)."""
    mask = np.zeros((size, size), np.uint8)
    lo, hi = size // 4, (3 * size) // 4
    mask[lo:hi, lo:hi] = 255
    return mask


def random_holes(rng: np.random.Generator, size: int, max_holes: int) -> np.ndarray:
    """(size, size) uint8 mask of 1..max_holes random rectangles (sides in [size/8, size/2])."""
    mask = np.zeros((size, size), np.uint8)
    lo, hi = max(1, size // 8), max(1, size // 2)
    for _ in range(int(rng.integers(1, max_holes + 1))):
        h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
        top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        mask[top : top + h, left : left + w] = 255
    return mask


def fill_hole(image: np.ndarray, mask: np.ndarray, fill: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return a copy of ``image`` (H, W, 3) uint8 with ``mask`` (H, W; 255 = hole) filled.

    ``fill``: ``"white"`` (255), ``"mean"`` (:data:`MEAN_FILL`) or ``"noise"`` (uniform, needs ``rng``).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the image {image.shape[:2]}")
    out = image.copy()
    hole = mask > 0
    if fill == "white":
        out[hole] = 255
    elif fill == "mean":
        out[hole] = MEAN_FILL
    elif fill == "noise":
        if rng is None:
            raise ValueError("fill='noise' needs a random generator")
        out[hole] = rng.integers(0, 256, (int(hole.sum()), 3), dtype=np.uint8)
    else:
        raise ValueError(f"fill must be white, mean or noise, got {fill!r}")
    return out


class InpaintingBuilder(DatasetBuilder):
    """A = photo with a hole, B = photo; masks/ = the hole (255 inside)."""

    name = "inpainting"
    version = "1"
    summary = "Inpainting pairs from any photo folder (Paris StreetView included): A = photo with a hole, B = photo."
    source_layout = (
        "a folder or archive of photos, any depth; Paris StreetView: paris_train_original/*.JPG and "
        "paris_eval/paris_eval_gt/NNN_im.png (eval -> test)"
    )
    Options = InpaintingOptions

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: InpaintingOptions = self.options
        if opts.max_holes < 1:
            raise ConfigError(f"--max-holes must be at least 1, got {opts.max_holes}")
        check_fraction("--test-fraction", opts.test_fraction)
        self.tree = open_sources(sources)
        names = list_photos(self.tree)
        if not names:
            raise InputFileError(sources[0], "no images found (expected a folder or archive of photos)")
        out_names = output_names(names)
        evals = [n for n in names if PARIS_EVAL in n]
        if evals:  # Paris StreetView: the published eval set is the test split
            split = {n: "test" for n in evals}
            rest = [n for n in names if PARIS_EVAL not in n]
            split.update(seeded_splits(rest, build.seed, "inpainting", opts.val_fraction, 0.0))
            self.split_rule = "paris_eval_gt -> test; the rest train/val with the seed"
        else:
            split = seeded_splits(names, build.seed, "inpainting", opts.val_fraction, opts.test_fraction)
            self.split_rule = "train/val/test with the seed"
        for name in names:
            yield PairJob(split[name], out_names[name], (name,), name)

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        opts: InpaintingOptions = self.options
        photo = decode_image(self.tree.read_bytes(job.payload), self.tree.display(job.payload))
        photo = resize_center_crop(photo, build.size)
        rng = job_rng(build.seed, job.split, job.name)
        mask = center_hole(build.size) if opts.hole == "center" else random_holes(rng, build.size, opts.max_holes)
        return PairResult(fill_hole(photo, mask, opts.fill, rng), photo, extras={"masks": mask})

    def manifest_extras(self) -> dict:
        return {
            "direction": "AtoB",
            "a": "photo with a hole",
            "b": "photo",
            "masks": "masks/<split>/<name>.png: 255 inside the hole, 0 outside",
            "crop": "short side resized to --size, centred square crop",
            "split_rule": getattr(self, "split_rule", None),
        }
