"""The contract of a streaming metric: state that grows with :meth:`update`, is combined with
:meth:`merge` (shards, ranks) and turned into numbers with :meth:`result`.

The state is a dict of numpy arrays (float64 sums and int64 counts), so it can be summed with
``all_reduce`` across ``torchrun`` ranks, or saved in a partial-state file and summed later: merging
the states of any split of the images gives the state of the whole set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class StreamingMetric(ABC):
    """A metric whose state is a fixed set of arrays that add up over disjoint sets of images."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The current state: name -> array (float64 sums, int64 counts)."""

    @abstractmethod
    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state by ``state`` (as returned by :meth:`state`)."""

    @abstractmethod
    def result(self) -> dict[str, Any]:
        """The metric's numbers (JSON-able)."""

    def merge(self, other: StreamingMetric) -> None:
        """Add ``other``'s state (of a disjoint set of images) into this one."""
        self.load_state(add_states(self.state(), other.state()))


def add_states(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Element-wise sum of two states with the same keys and shapes.

    Example:
        >>> add_states({"n": np.array([2])}, {"n": np.array([3])})["n"].tolist()
        [5]
    """
    if set(a) != set(b):
        raise ValueError(f"states differ in their keys: {sorted(set(a) ^ set(b))}")
    out = {}
    for key in a:
        if a[key].shape != b[key].shape:
            raise ValueError(f"state {key!r}: shapes {a[key].shape} and {b[key].shape} differ")
        out[key] = a[key] + b[key]
    return out
