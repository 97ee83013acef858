"""The segmentation-scorer contract and how scorers are found (entry-point group ``p2ptools.scorers``).

A scorer is a pretrained segmentation network that scores generated photos against ground-truth
labels: FCN-8s for pix2pix's FCN score (``fcn8s``: the Cityscapes caffemodel, its conversion, or a
``p2ptools fcn train`` checkpoint such as the demo's) and DRN-D-105 for the mIoU protocol of
pix2pixHD / SPADE (``drn-d-105``). Each is a subclass of :class:`SegmentationScorer` registered in
``pyproject.toml``::

    [project.entry-points."p2ptools.scorers"]
    fcn8s = "p2ptools.eval.scorer:Scorer"
    drn-d-105 = "p2ptools.eval.drn_scorer:DRNScorer"

A third-party package adds one the same way (e.g. DeepLabV2 for COCO-Stuff) and ``p2ptools eval
--miou NAME --miou-weights FILE`` uses it; ``p2ptools scorers`` lists them without importing them.
The evaluator never imports a scorer by name: it calls :func:`p2ptools.eval.scorer_registry.load_scorer_plugin`.

How to add a scorer: subclass :class:`SegmentationScorer` with class attributes ``name``,
``version``, ``summary``; implement :meth:`~SegmentationScorer.load` (read local weights, checking
every key: errors name the file and the first bad key), :meth:`~SegmentationScorer.preprocess`
(uint8 RGB batch -> network input), :meth:`~SegmentationScorer.logits` and give the instance a
``classes`` table; :meth:`~SegmentationScorer.predict` (resize, preprocess, logits, argmax) is
inherited and may be replaced (DRN-D-105's multi-scale test does).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from p2ptools.errors import ConfigError
from p2ptools.labels import ClassTable


@dataclass(frozen=True)
class ScorerOptions:
    """How a scorer runs: device, numerics, images per forward pass, and the multi-scale test
    (for scorers that have one; others refuse it)."""

    device: str = "cpu"
    precision: str = "fp32"
    tf32: bool = False
    batch_size: int = 1
    multi_scale: bool = False


class SegmentationScorer(ABC):
    """A segmentation network with its preprocessing and class table.

    Attributes:
        name, version, summary: registry metadata (class attributes).
        classes: the class table the predictions index into (an instance attribute); an index
            ``>= classes.num_classes`` means "no class".
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    classes: ClassTable

    @classmethod
    @abstractmethod
    def from_weights(cls, weights: str | Path, options: ScorerOptions) -> SegmentationScorer:
        """Load the scorer from a local weights file (nothing is downloaded)."""

    @abstractmethod
    def preprocess(self, images: np.ndarray):
        """(N, H, W, 3) uint8 RGB -> the network's input tensor (N, 3, H, W) on the scorer's device."""

    @abstractmethod
    def logits(self, x):
        """Network input -> (N, K, H, W) class scores, K >= ``classes.num_classes``."""

    @abstractmethod
    def predict(self, images: Sequence[np.ndarray], label_size: tuple[int, int]) -> np.ndarray:
        """uint8 RGB images -> (N, H, W) uint8 class indices at ``label_size`` = (H, W)."""

    @abstractmethod
    def info(self) -> dict:
        """JSON-able description for reports: weights, network, numerics."""


def check_scorer_options(options: ScorerOptions) -> None:
    """Raise ConfigError for options no scorer accepts (precision, batch size)."""
    if options.precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be one of fp32, bf16, got {options.precision!r}")
    if options.batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {options.batch_size}")
