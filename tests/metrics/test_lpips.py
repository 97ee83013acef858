"""LPIPS: the lpips package's network on a backbone loaded from a local torchvision file equals
lpips.LPIPS whose backbone came through torchvision's own loading path (1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2ptools.errors import CheckpointError, ConfigError
from p2ptools.metrics.lpips import LPIPSScorer, LPIPSState, load_lpips


def reference_lpips(net, weights, monkeypatch):
    """lpips.LPIPS with a pretrained backbone, torchvision's download replaced by our file."""
    import warnings

    import lpips
    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url", lambda *a, **k: torch.load(weights, weights_only=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated pretrained=True
        return lpips.LPIPS(net=net, version="0.1", verbose=False).eval()


def test_equal_to_lpips_package(alexnet_file, monkeypatch, images):
    net, weights = "alex", alexnet_file
    model, info = load_lpips(net, weights)
    a, b = images(3, size=(32, 32), seed=1), images(3, size=(32, 32), seed=2)
    ours, resized = LPIPSScorer(model)(a, b)
    import lpips

    ref = reference_lpips(net, weights, monkeypatch)
    with torch.no_grad():
        theirs = np.array([float(ref(lpips.im2tensor(x), lpips.im2tensor(y))) for x, y in zip(a, b, strict=True)])
    assert resized == 0 and ours.shape == (3,)
    assert np.abs(ours - theirs).max() <= 1e-5
    assert ours.min() > 0
    assert info["backbone"]["matches_published"] is False and info["version"] == "0.1"
    same, _ = LPIPSScorer(model)(a[:1], a[:1])
    assert same[0] == pytest.approx(0.0, abs=1e-7)


def test_vgg_backbone_from_the_features_of_a_torchvision_file(vgg_file, images):
    model, info = load_lpips("vgg", vgg_file)
    state = torch.load(vgg_file, weights_only=True)
    loaded = model.net.state_dict()
    assert len(loaded) == 26  # the 13 convolutions of VGG16
    for key, value in loaded.items():  # net.slice<k>.<i>.weight holds torchvision's features.<i>.weight
        assert torch.equal(value, state["features." + key.split(".", 1)[1]])
    values, _ = LPIPSScorer(model)(images(2, size=(32, 32), seed=5), images(2, size=(32, 32), seed=6))
    assert np.all(values > 0) and info["net"] == "vgg"


def test_differing_sizes_are_resized_and_counted(alexnet_file, images):
    model, _ = load_lpips("alex", alexnet_file)
    big, small = images(1, size=(48, 48), seed=3)[0], images(1, size=(32, 32), seed=4)[0]
    values, resized = LPIPSScorer(model)([big, small], [small, small])
    assert resized == 1 and values[1] == pytest.approx(0.0, abs=1e-7) and values[0] > 0


def test_state_mean_merge_and_worst():
    a, b = LPIPSState(), LPIPSState()
    a.update(["x", "y"], np.array([0.1, 0.4]))
    b.update(["z"], np.array([0.3]), resized=1)
    a.merge(b)
    assert a.result() == {"mean": pytest.approx(0.8 / 3), "n_images": 3, "resized_outputs": 1}
    assert [n for n, _ in a.worst(2)] == ["y", "x"]  # merge adds the sums; per-image values stay with their owner


def test_bad_weights(tmp_path, alexnet_file, vgg_file):
    with pytest.raises(ConfigError, match="--lpips needs local weights: pass --lpips-backbone-weights alexnet-owt-7be5be79.pth"):
        load_lpips("alex", None)
    with pytest.raises(ConfigError, match="choose from alex, vgg"):
        load_lpips("squeeze", alexnet_file)
    with pytest.raises(CheckpointError, match="vgg16-397923af.pth: not torchvision alex"):
        load_lpips("alex", vgg_file)
