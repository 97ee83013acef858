"""pix2pixHD losses against hand computations (numpy, python loops) on tiny tensors; the VGG19
file loader on generated torchvision-layout state dicts."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from p2ptools_pix2pixhd.losses import (VGG_WEIGHTS, VGG19Features, discriminator_loss, feature_matching_loss, gan_loss,
                                       load_vgg19, vgg_loss)

from p2ptools.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).parent))
from hd_testutils import random_vgg19_file  # noqa: E402


def scales(seed: int, n_layers: int = 2, num_d: int = 2) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 2 + j, 3, 3 - d, generator=g) for j in range(n_layers + 2)] for d in range(num_d)]


def test_gan_losses_sum_over_scales():
    preds = scales(0)
    lasts = [p[-1].numpy().astype(np.float64) for p in preds]
    assert gan_loss(preds, True, "lsgan").item() == pytest.approx(sum(((x - 1) ** 2).mean() for x in lasts), rel=1e-6)
    assert gan_loss(preds, False, "lsgan").item() == pytest.approx(sum((x ** 2).mean() for x in lasts), rel=1e-6)
    sig = [1 / (1 + np.exp(-x)) for x in lasts]
    assert gan_loss(preds, True, "vanilla").item() == pytest.approx(sum(-np.log(s).mean() for s in sig), rel=1e-6)
    assert gan_loss(preds, False, "vanilla").item() == pytest.approx(sum(-np.log(1 - s).mean() for s in sig), rel=1e-6)


def test_discriminator_loss_is_halved():
    fake, real = scales(1), scales(2)
    loss, terms = discriminator_loss(fake, real, "lsgan")
    by_hand = 0.5 * (sum((p[-1].double() ** 2).mean() for p in fake) + sum(((p[-1].double() - 1) ** 2).mean() for p in real))
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert set(terms) == {"D_fake", "D_real"}


def test_feature_matching_weights_and_detach():
    n_layers, num_d = 3, 2
    fake = [[t.requires_grad_() for t in s] for s in scales(3, n_layers, num_d)]
    real = [[t.requires_grad_() for t in s] for s in scales(4, n_layers, num_d)]
    loss = feature_matching_loss(fake, real, lambda_feat=10.0)
    by_hand = 0.0
    for i in range(num_d):
        for j in range(n_layers + 1):  # the final prediction is not matched
            diff = np.abs(fake[i][j].detach().numpy().astype(np.float64) - real[i][j].detach().numpy())
            by_hand += (1 / num_d) * (4 / (n_layers + 1)) * diff.mean() * 10.0
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None and fake[0][-1].grad is None


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    random_vgg19_file(path)
    return path


def test_vgg19_features_match_torchvision_and_the_weighted_l1(vgg_file):
    ours = load_vgg19(vgg_file)
    with torch.device("meta"):
        tv = torchvision.models.vgg19().features
    tv = tv.to_empty(device="cpu").eval()
    tv.load_state_dict({k[len("features."):]: v for k, v in torch.load(vgg_file, weights_only=True).items() if k.startswith("features.")})
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    ends = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's indices
    fx, fy, h = [], [], [x, y]
    with torch.no_grad():
        for i, layer in enumerate(tv[:30]):
            h = [layer(t) for t in h]
            if i in ends:
                fx.append(h[0].clone())
                fy.append(h[1].clone())
    ours_feats = ours(x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours_feats, fx, strict=True))
    by_hand = sum(w * (a - b).abs().mean().item() for w, a, b in zip(VGG_WEIGHTS, fx, fy, strict=True)) * 10.0
    assert vgg_loss(ours, x, y, 10.0).item() == pytest.approx(by_hand, rel=1e-5)
    assert not any(p.requires_grad for p in ours.parameters())
    assert math.isclose(sum(VGG_WEIGHTS), 1 / 32 + 1 / 16 + 1 / 8 + 1 / 4 + 1)


def test_vgg19_file_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such VGG19 weights file.*--no-vgg-loss"):
        load_vgg19(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="bad.pth.*not a torchvision state-dict file"):
        load_vgg19(bad)
    partial = tmp_path / "partial.pth"
    random_vgg19_file(partial, drop="features.28.weight", random=False)
    with pytest.raises(CheckpointError, match="1 missing key.*features.28.weight"):
        load_vgg19(partial)
    wrong = tmp_path / "wrong.pth"
    random_vgg19_file(wrong, reshape="features.0.weight", random=False)
    with pytest.raises(CheckpointError, match="shape mismatch features.0.weight"):
        load_vgg19(wrong)
    assert isinstance(VGG19Features().features[28], torch.nn.Conv2d)
