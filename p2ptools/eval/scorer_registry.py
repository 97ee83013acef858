"""A scorer found through the registry (entry-point group ``p2ptools.scorers``), loaded from its weights and checked against the contract of :mod:`p2ptools.eval.scorers`
(kept apart from the contract, which the registry itself checks plugins against)."""

from __future__ import annotations

from pathlib import Path

from p2ptools import registry
from p2ptools.errors import PluginError
from p2ptools.eval.scorers import ScorerOptions, SegmentationScorer
from p2ptools.labels import ClassTable


def load_scorer_plugin(name: str, weights: str | Path, options: ScorerOptions) -> SegmentationScorer:
    """Load the scorer registered as ``name`` from ``weights``.

    Raises:
        PluginError: an unknown name (the known ones listed).
        InputFileError / CheckpointError: missing or mismatched weights.
        ConfigError: options the scorer does not support.
    """
    cls = registry.load("scorers", name)
    scorer = cls.from_weights(weights, options)
    if not isinstance(getattr(scorer, "classes", None), ClassTable):
        raise PluginError(f"scorer {name!r}: from_weights must return a scorer with a ClassTable 'classes'")
    return scorer
