"""The ``colorization`` builder: A = the grayscale photo, B = the colour photo.

Photos come from any folder or archive (any depth) and are split train/val/test with the seed.
Each is resized so its short side is ``--size`` and the centred square is cropped.

Gray (``--gray``):

- ``luma`` (default): OpenCV's ``COLOR_RGB2GRAY``, Rec. 601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``.
- ``lab``: CIELab lightness of ``skimage.color.rgb2lab`` (D65), ``L * 255 / 100`` rounded; this is the
  input pix2pix's colorization mode feeds its generator (it predicts a and b from L).

``--gray-channels 3`` (default) stores the gray image replicated into R, G and B, which is what the
aligned file holds. ``--gray-channels 1`` declares the input single-channel: the file still holds the
gray value replicated (an aligned file has two halves of one shape), and the manifest records
``extras.input_channels = 1`` so that a model reads only one channel of A.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from p2ptools_datasets._photos import list_photos, output_names, resize_center_crop, seeded_splits

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, open_sources
from p2ptools.errors import ConfigError, InputFileError
from p2ptools.imageio import decode_image
from p2ptools.options import Range


@dataclass(frozen=True)
class ColorizationOptions:
    """Options of :class:`ColorizationBuilder`."""

    gray: str = field(default="luma", metadata={"help": "Gray conversion: Rec. 601 luma (OpenCV) or CIELab L.", "choices": ("luma", "lab")})
    gray_channels: int = field(default=3, metadata={"help": "Channels of the A input (1 is stored replicated, recorded in the manifest).", "choices": (1, 3)})
    val_fraction: float = field(default=0.05, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of photos put in val/."})
    test_fraction: float = field(default=0.05, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of photos put in test/."})


def to_gray(image: np.ndarray, method: str = "luma") -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 gray by ``"luma"`` (Rec. 601) or ``"lab"`` (L * 255 / 100)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if method == "luma":
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if method == "lab":
        from skimage.color import rgb2lab

        lightness = rgb2lab(image)[:, :, 0]
        return np.clip(np.round(lightness * (255.0 / 100.0)), 0, 255).astype(np.uint8)
    raise ValueError(f"method must be 'luma' or 'lab', got {method!r}")


class ColorizationBuilder(DatasetBuilder):
    """A = gray photo (1 or 3 channels), B = colour photo."""

    name = "colorization"
    version = "1"
    summary = "Colorization pairs from any photo folder: A = gray photo, B = colour photo."
    source_layout = "a folder or archive of photos, any depth"
    Options = ColorizationOptions

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: ColorizationOptions = self.options
        if opts.gray_channels not in (1, 3):
            raise ConfigError(f"--gray-channels must be 1 or 3, got {opts.gray_channels}")
        self.tree = open_sources(sources)
        names = list_photos(self.tree)
        if not names:
            raise InputFileError(sources[0], "no images found (expected a folder or archive of photos)")
        split = seeded_splits(names, build.seed, "colorization", opts.val_fraction, opts.test_fraction)
        out_names = output_names(names)
        for name in names:
            yield PairJob(split[name], out_names[name], (name,), name)

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        photo = decode_image(self.tree.read_bytes(job.payload), self.tree.display(job.payload))
        photo = resize_center_crop(photo, build.size)
        gray = to_gray(photo, self.options.gray)
        return PairResult(np.repeat(gray[:, :, None], 3, axis=2), photo)

    def manifest_extras(self) -> dict:
        opts: ColorizationOptions = self.options
        return {
            "direction": "AtoB",
            "a": f"gray ({'Rec. 601 luma' if opts.gray == 'luma' else 'CIELab L * 255 / 100'}), stored in R, G and B",
            "b": "colour photo",
            "input_channels": opts.gray_channels,
            "output_channels": 3,
            "crop": "short side resized to --size, centred square crop",
        }
