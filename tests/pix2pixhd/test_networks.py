"""pix2pixHD networks: the official parameter counts and key names (built on the meta device),
shapes and the coarse-to-fine data flow on tiny widths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from p2ptools_pix2pixhd.networks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator, count_parameters

from p2ptools.errors import ConfigError


def test_global_generator_matches_the_official_count_and_keys():
    with torch.device("meta"):
        net = GlobalGenerator(36, 3, ngf=64, n_downsample=4, n_blocks=9)
    keys = list(net.state_dict())
    assert count_parameters(net) == 182_546_755 and len(keys) == 56
    # official layout: conv 7x7 at model.1, downsamplings at 4, 7, 10, 13, blocks 16..24, up 25..34, out 38
    assert keys[:4] == ["model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias"]
    assert "model.16.conv_block.1.weight" in keys and "model.24.conv_block.5.bias" in keys
    assert keys[-2:] == ["model.38.weight", "model.38.bias"]
    sd = net.state_dict()
    assert sd["model.13.weight"].shape == (1024, 512, 3, 3)
    assert sd["model.25.weight"].shape == (1024, 512, 3, 3)  # ConvTranspose2d: (in, out, kh, kw)
    assert sd["model.38.weight"].shape == (3, 64, 7, 7)


def test_local_enhancer_matches_the_official_count_and_keys():
    with torch.device("meta"):
        net = LocalEnhancer(36, 3, ngf=32, n_downsample_global=4, n_blocks_global=9, n_local_enhancers=1, n_blocks_local=3)
    sd = net.state_dict()
    assert count_parameters(net) == 182_857_059 and len(sd) == 74
    assert sum(k.startswith("model.") for k in sd) == 54  # the global part without its output conv
    assert sd["model.1.weight"].shape == (64, 36, 7, 7)
    assert sd["model1_1.1.weight"].shape == (32, 36, 7, 7) and sd["model1_1.4.weight"].shape == (64, 32, 3, 3)
    assert sd["model1_2.0.conv_block.1.weight"].shape == (64, 64, 3, 3)
    assert sd["model1_2.3.weight"].shape == (64, 32, 3, 3) and sd["model1_2.7.weight"].shape == (3, 32, 7, 7)
    assert net.local_parameter_names()[0] == "model1_1.1.weight" and len(net.local_parameter_names()) == 20


@pytest.mark.parametrize("num_d, count", [(2, 5_603_202), (3, 8_404_803)])
def test_multiscale_discriminator_matches_the_official_count(num_d, count):
    with torch.device("meta"):
        net = MultiscaleDiscriminator(39, ndf=64, n_layers=3, num_D=num_d)
    sd = net.state_dict()
    assert count_parameters(net) == count and len(sd) == 10 * num_d
    assert sd["scale0_layer0.0.weight"].shape == (64, 39, 4, 4)
    assert sd["scale0_layer3.0.weight"].shape == (512, 256, 4, 4) and sd["scale0_layer4.0.weight"].shape == (1, 512, 4, 4)


def test_global_generator_shapes_and_range():
    torch.manual_seed(0)
    net = GlobalGenerator(5, 3, ngf=4, n_downsample=2, n_blocks=1)
    y = net(torch.randn(2, 5, 16, 24))
    assert y.shape == (2, 3, 16, 24) and y.abs().max() <= 1 and net.size_multiple == 4


def test_local_enhancer_adds_global_features_to_the_local_branch():
    torch.manual_seed(0)
    net = LocalEnhancer(5, 3, ngf=4, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=1, n_blocks_local=1).eval()
    x = torch.randn(1, 5, 16, 16)
    assert net.size_multiple == 4
    # by hand: the global part on the AvgPool-downsampled input, plus the local front, then the back
    small = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    expected = net.model1_2(net.model1_1(x) + net.model(small))
    assert torch.allclose(net(x), expected) and net(x).shape == (1, 3, 16, 16)


def test_multiscale_discriminator_returns_features_per_scale_full_resolution_first():
    torch.manual_seed(0)
    net = MultiscaleDiscriminator(6, ndf=4, n_layers=2, num_D=2)
    x = torch.randn(1, 6, 32, 32)
    out = net(x)
    assert len(out) == 2 and all(len(f) == 4 for f in out)
    # the full-resolution input goes through scale1, the downsampled one through scale0
    h = x
    for j in range(4):
        h = getattr(net, f"scale1_layer{j}")(h)
    assert torch.equal(out[0][-1], h)
    assert out[0][-1].shape == (1, 1, 11, 11) and out[1][-1].shape == (1, 1, 7, 7)
    assert out[0][0].shape[1] == 4 and out[0][1].shape[1] == 8 and out[0][2].shape[1] == 16


def test_bad_names_are_config_errors():
    from p2ptools_pix2pixhd.networks import define_G, norm_factory

    with pytest.raises(ConfigError, match="--norm"):
        norm_factory("group")
    with pytest.raises(ConfigError, match="--netG"):
        define_G("huge", 3, 3, ngf=4, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=1, n_blocks_local=1, norm="instance")
