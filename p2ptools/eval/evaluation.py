"""What an evaluation produced (:class:`Evaluation`), apart from how it was computed, so that the
streaming pass (``evaluate``), the summable state (``partial``) and the report writers share it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p2ptools.labels import ClassTable

#: The paper's result size. Real photos are resized to the size of the results they are compared with
#: before scoring them as the ground-truth row ("resize them to 256x256 first, like the results",
#: GUIDE.md section 4), so that both rows reach the scorer at one resolution.
GROUND_TRUTH_SIZE = (256, 256)


@dataclass
class Evaluation:
    """Everything a report needs: the numbers (``report``, JSON-able) and the raw material."""

    name: str
    report: dict[str, Any]
    classes: ClassTable | None = None
    confusion: np.ndarray | None = None
    gt_confusion: np.ndarray | None = None
    color: dict[str, np.ndarray] | None = None  # result L/a/b probabilities
    color_truth: dict[str, np.ndarray] | None = None  # ground truth's
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"name", "input", "output", "truth"}
    gallery: list[dict[str, Any]] = field(default_factory=list)  # the worst LPIPS: {"name", "value", "input", "output", "truth"}
    per_image: dict[str, float] = field(default_factory=dict)  # LPIPS of every image
    partial: Any = None  # the summable state of a --shard (p2ptools.eval.partial.Partial)
