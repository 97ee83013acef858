"""A complete, minimal dataset builder to copy: pairs each photo with its horizontal mirror.

It is not registered (so it is not listed to users) but passes the registry smoke test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, open_sources
from p2ptools.errors import InputFileError
from p2ptools.imageio import decode_image, is_image_name
from p2ptools.options import Range


@dataclass(frozen=True)
class MirrorOptions:
    """Options of :class:`MirrorBuilder`."""

    val_fraction: float = field(default=0.1, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of images put in val/."})


class MirrorBuilder(DatasetBuilder):
    """Template builder: A = photo, B = its mirror image."""

    name = "mirror-template"
    version = "1"
    summary = "Template: A = photo, B = the photo mirrored left-right."
    source_layout = "a folder or archive of photos (any depth)"
    Options = MirrorOptions

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        self.tree = open_sources(sources)  # kept on self: workers get a copy
        names = [n for n in self.tree.names() if is_image_name(n)]
        if not names:
            raise InputFileError(sources[0], "no images found")
        n_val = round(len(names) * self.options.val_fraction)
        for i, name in enumerate(names):
            yield PairJob("val" if i < n_val else "train", Path(name).stem, (name,), name)

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        photo = decode_image(self.tree.read_bytes(job.payload), self.tree.display(job.payload))
        photo = cv2.resize(photo, (build.size, build.size), interpolation=cv2.INTER_AREA)
        return PairResult(photo, photo[:, ::-1].copy())
