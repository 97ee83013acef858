"""The scorer contract and registry (p2ptools.eval.scorers): both built-in scorers are entries,
the FCN-8s of a 'p2ptools fcn train' checkpoint (the demo's) loads through it like the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2ptools import registry
from p2ptools.errors import ConfigError, PluginError
from p2ptools.eval.scorer import CHECKPOINT_NAME, Scorer, ScorerConfig, load_scorer, save_fcn_weights
from p2ptools.eval.scorer_registry import load_scorer_plugin
from p2ptools.eval.scorers import ScorerOptions, SegmentationScorer
from p2ptools.labels import ClassTable
from p2ptools.nets.fcn8s import FCN8s


def test_the_registry_lists_both_builtin_scorers_without_importing_them():
    infos = {i.name: i for i in registry.list_plugins("scorers")}
    assert {"fcn8s", "drn-d-105"} <= set(infos)
    assert infos["drn-d-105"].value == "p2ptools.eval.drn_scorer:DRNScorer" and infos["drn-d-105"].summary.startswith("DRN-D-105")
    for name in ("fcn8s", "drn-d-105"):
        cls = registry.load("scorers", name)
        assert issubclass(cls, SegmentationScorer) and cls.name == name


def test_a_trained_fcn_checkpoint_is_a_scorer_like_the_others(tmp_path):
    torch.manual_seed(0)
    table = ClassTable("two", ("ground", "thing"), (1, 2), ((0, 0, 0), (255, 255, 255)))
    save_fcn_weights(tmp_path / "ckpt" / CHECKPOINT_NAME, FCN8s(2, 1 / 32).state_dict(), ScorerConfig(2, 1 / 32, table, (100.0, 110.0, 120.0), {"trained": True}))
    scorer = load_scorer_plugin("fcn8s", tmp_path / "ckpt", ScorerOptions())
    assert isinstance(scorer, Scorer) and scorer.classes == table
    images = [np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)]
    np.testing.assert_array_equal(scorer.predict(images, (24, 32)), load_scorer(tmp_path / "ckpt").predict(images, (24, 32)))
    x = scorer.preprocess(np.stack(images))
    assert x.shape == (1, 3, 24, 32) and scorer.logits(x).shape == (1, 2, 24, 32)
    with pytest.raises(ConfigError, match="no multi-scale test"):
        load_scorer_plugin("fcn8s", tmp_path / "ckpt", ScorerOptions(multi_scale=True))


def test_an_unknown_scorer_lists_the_known_ones(tmp_path):
    with pytest.raises(PluginError, match="unknown scorer 'deeplab'; available: .*drn-d-105.*fcn8s"):
        load_scorer_plugin("deeplab", tmp_path / "x", ScorerOptions())
