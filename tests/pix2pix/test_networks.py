"""Generators and discriminators: reference parameter counts, key layout, receptive fields, init."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from p2p_testutils import pix2pix_reference
from p2ptools.errors import ConfigError
from p2ptools_pix2pix.networks import (
    count_parameters,
    define_D,
    define_G,
    generator_depth,
    init_weights,
    receptive_field,
)




def _meta_G(*args, **kwargs) -> nn.Module:
    with torch.device("meta"):  # shapes only: big networks cost nothing
        return define_G(*args, **kwargs)


# --- parameter counts ---------------------------------------------------------------------------

# GUIDE.md section 3: the reference implementation's figures
@pytest.mark.parametrize(
    ("netG", "norm", "expected"),
    [("unet_256", "batch", 54_413_955), ("unet_256", "instance", 54_409_603), ("unet_128", "batch", 41_828_995)],
)
def test_generator_parameter_counts_equal_reference(netG, norm, expected):
    assert count_parameters(_meta_G(netG, 3, 3, 64, norm)) == expected


@pytest.mark.parametrize(("netD", "expected"), [("patch70", 2_768_705), ("n_layers:3", 2_768_705), ("patch16", 139_585), ("n_layers:1", 139_585), ("patch286", 11_159_361)])
def test_discriminator_parameter_counts_equal_reference(netD, expected):
    assert count_parameters(define_D(netD, 6, 64, "batch")) == expected


def test_pixel_discriminator_is_1x1_convs_64_128_1():
    net = define_D("pixel", 6, 64, "batch")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(6, 64, (1, 1)), (64, 128, (1, 1)), (128, 1, (1, 1))]
    # first conv with bias, then bias-free (batch norm) convs, one BN of 128 channels
    assert count_parameters(net) == (6 * 64 + 64) + 64 * 128 + 2 * 128 + 128


def _unet_count(depth: int, ngf: int, i: int, o: int, norm: str, skip: bool) -> int:
    """Closed-form parameter count of the reference U-Net / encoder-decoder."""
    c = [ngf, 2 * ngf, 4 * ngf] + [8 * ngf] * (depth - 3)
    bias = norm in ("instance", "none")
    bn = 2 if norm == "batch" else 0
    total = 0
    for k in range(1, depth + 1):
        cin = i if k == 1 else c[k - 2]
        total += cin * c[k - 1] * 16 + (c[k - 1] if bias else 0)  # down conv
        if 1 < k < depth:
            total += bn * c[k - 1]  # down norm
        up_in = c[k - 1] * (2 if skip and k < depth else 1)
        cout = o if k == 1 else c[k - 2]
        total += up_in * cout * 16 + (cout if bias or k == 1 else 0)  # up conv (outermost: bias)
        if k > 1:
            total += bn * cout  # up norm
    return total


def _resnet_count(blocks: int, ngf: int, i: int, o: int, norm: str) -> int:
    bias = norm in ("instance", "none")
    bn = 2 if norm == "batch" else 0

    def conv(cin, cout, k):
        return cin * cout * k * k + (cout if bias else 0) + bn * cout

    total = conv(i, ngf, 7) + conv(ngf, 2 * ngf, 3) + conv(2 * ngf, 4 * ngf, 3)
    total += blocks * 2 * conv(4 * ngf, 4 * ngf, 3)
    total += conv(4 * ngf, 2 * ngf, 3) + conv(2 * ngf, ngf, 3)
    return total + ngf * o * 49 + o


def test_closed_form_agrees_with_reference_figures():
    assert _unet_count(8, 64, 3, 3, "batch", True) == 54_413_955
    assert _unet_count(8, 64, 3, 3, "instance", True) == 54_409_603
    assert _unet_count(7, 64, 3, 3, "batch", True) == 41_828_995


@pytest.mark.parametrize(
    ("netG", "ngf", "i", "o", "norm"),
    [
        ("unet_32", 64, 3, 3, "batch"),
        ("unet_512", 32, 1, 3, "instance"),
        ("unet_64", 16, 3, 1, "none"),
        ("encoder_decoder_256", 64, 3, 3, "batch"),
        ("encoder_decoder_128", 8, 1, 3, "instance"),
        ("resnet_9blocks", 64, 3, 3, "batch"),
        ("resnet_9blocks", 64, 3, 3, "instance"),
        ("resnet_6blocks", 32, 1, 3, "none"),
        ("unet_256", 64, 3, 3, "syncbatch"),
    ],
)
def test_every_generator_matches_its_closed_form_count(netG, ngf, i, o, norm):
    got = count_parameters(_meta_G(netG, i, o, ngf, norm))
    bn_norm = "batch" if norm == "syncbatch" else norm
    if netG.startswith("resnet"):
        expected = _resnet_count(int(netG[7:-6]), ngf, i, o, bn_norm)
    else:
        kind, size = netG.rsplit("_", 1)
        expected = _unet_count(int(size).bit_length() - 1, ngf, i, o, bn_norm, kind == "unet")
    assert got == expected


def test_resnet_9blocks_instance_count_is_the_cyclegan_figure():
    # the reference prints "Total number of parameters : 11.378 M" for this generator
    assert round(count_parameters(_meta_G("resnet_9blocks", 3, 3, 64, "instance")) / 1e6, 3) == 11.378


# --- state-dict layout --------------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "n_keys"), [("batch", 82), ("instance", 32)])
def test_unet_256_state_dict_layout_is_the_reference_layout(norm, n_keys):
    ours = {k: tuple(v.shape) for k, v in _meta_G("unet_256", 3, 3, 64, norm).state_dict().items()}
    with torch.device("meta"):
        ref = pix2pix_reference().RefUnet(3, 3, 8, 64, norm, use_dropout=True)
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert len(ours) == n_keys
    assert ours["model.model.0.weight"] == (64, 3, 4, 4)
    assert ours["model.model.3.weight"] == (128, 3, 4, 4) and ours["model.model.3.bias"] == (3,)
    assert ours["model.model.1.model.1.weight"] == (128, 64, 4, 4)
    if norm == "batch":
        assert "model.model.0.bias" not in ours
        for buf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert f"model.model.1.model.2.{buf}" in ours
    else:
        assert ours["model.model.0.bias"] == (64,)
        assert not any("running" in k for k in ours)


def test_encoder_decoder_keeps_the_unet_keys_without_skip_channels():
    unet = _meta_G("unet_128", 3, 3).state_dict()
    encdec = _meta_G("encoder_decoder_128", 3, 3).state_dict()
    assert unet.keys() == encdec.keys()
    assert unet["model.model.3.weight"].shape == (128, 3, 4, 4)
    assert encdec["model.model.3.weight"].shape == (64, 3, 4, 4)


def test_syncbatch_has_batch_norm_keys_and_runs_as_batch_norm_on_one_process():
    torch.manual_seed(0)
    sync = define_G("unet_32", 3, 3, ngf=4, norm="syncbatch", dropout=False)
    plain = define_G("unet_32", 3, 3, ngf=4, norm="batch", dropout=False)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
    plain.load_state_dict(sync.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(sync(x), plain(x))


@pytest.mark.parametrize(("netG", "n_dropout"), [("unet_256", 3), ("unet_128", 2), ("unet_64", 1), ("unet_32", 0), ("encoder_decoder_256", 3), ("resnet_6blocks", 6)])
def test_dropout_placement(netG, n_dropout):
    net = _meta_G(netG, 3, 3)
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Dropout)]
    assert len(names) == n_dropout
    assert not any(isinstance(m, nn.Dropout) for m in _meta_G(netG, 3, 3, dropout=False).modules())
    if netG == "unet_256":
        # right after the up-norm (index 6) of levels 5, 6, 7; level 8 is the innermost one
        # level k (outermost = 1) is the block at "model.model.1" + ".model.3" * (k - 2)
        assert sorted(names) == sorted("model.model.1" + ".model.3" * (k - 2) + ".model.7" for k in (5, 6, 7))
        for name in names:
            block = net.get_submodule(name.rsplit(".", 1)[0])
            assert isinstance(block[6], nn.BatchNorm2d) and isinstance(block[7], nn.Dropout)


# --- forward ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("netG", "ngf", "i", "o", "norm", "size"),
    [
        ("unet_32", 4, 3, 3, "batch", 32),
        ("unet_32", 4, 1, 3, "instance", 64),
        ("encoder_decoder_64", 4, 3, 1, "none", 64),
        ("resnet_6blocks", 4, 3, 3, "batch", 20),
        ("resnet_9blocks", 4, 1, 1, "instance", 16),
    ],
)
def test_generators_keep_the_size_and_output_tanh_range(netG, ngf, i, o, norm, size):
    torch.manual_seed(0)
    net = define_G(netG, i, o, ngf, norm)
    y = net(torch.rand(2, i, size, size) * 2 - 1)
    assert y.shape == (2, o, size, size)
    assert y.abs().max() <= 1 and y.std() > 0


def test_encoder_decoder_output_depends_on_the_bottleneck_only():
    """Freeze the innermost code: the encoder-decoder's output no longer depends on the input, the
    U-Net's still does (through its skip connections)."""
    torch.manual_seed(0)
    x1, x2 = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    for netG, skips in (("unet_32", True), ("encoder_decoder_32", False)):
        net = define_G(netG, 3, 3, 4, "none", dropout=False)
        innermost = net.get_submodule("model.model.1" + ".model.3" * 3)
        assert isinstance(innermost.model[1], nn.Conv2d) and len(innermost.model) == 5
        innermost.model[1].register_forward_hook(lambda m, i, out: torch.ones_like(out))
        with torch.no_grad():
            differ = not torch.equal(net(x1), net(x2))
        assert differ == skips


@pytest.mark.parametrize(("netD", "ndf", "size", "expected"), [("pixel", 4, 8, 1), ("patch16", 4, 48, 16), ("patch70", 4, 128, 70), ("n_layers:2", 4, 80, 34), ("patch286", 2, 352, 286)])
def test_receptive_field_measured_by_gradient(netD, ndf, size, expected):
    torch.manual_seed(0)
    net = define_D(netD, 3, ndf, "batch").eval()
    x = torch.zeros(1, 3, size, size, requires_grad=True)
    y = net(x)
    i, j = y.shape[2] // 2, y.shape[3] // 2
    y[0, 0, i, j].backward()
    hit = x.grad[0].abs().sum(0) > 0
    rows, cols = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
    extent = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    assert rows[0] > 0 and rows[-1] < size - 1, "receptive field touches the border: enlarge the input"
    assert extent == (expected, expected)
    assert receptive_field(net) == receptive_field(netD) == expected


def test_discriminator_output_grid():
    x = torch.rand(1, 6, 256, 256)
    assert define_D("patch70", 6, 8)(x).shape == (1, 1, 30, 30)
    assert define_D("pixel", 6, 8)(x).shape == (1, 1, 256, 256)
    assert define_D("patch70", 3, 8, "instance")(x[:, :3]).shape == (1, 1, 30, 30)


# --- init and names -----------------------------------------------------------------------------


def test_init_weights_is_the_reference_normal_init():
    torch.manual_seed(0)
    net = define_G("unet_64", 3, 3, ngf=32)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    w = torch.cat([m.weight.detach().flatten() for m in convs])
    assert abs(float(w.mean())) < 1e-4 and abs(float(w.std()) - 0.02) < 2e-4
    assert all(m.bias is None or not m.bias.any() for m in convs)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    g = torch.cat([m.weight.detach() for m in bns])
    assert abs(float(g.mean()) - 1) < 2e-3 and abs(float(g.std()) - 0.02) < 2e-3
    assert not torch.cat([m.bias for m in bns]).any()
    init_weights(net, std=0.5)
    assert abs(float(torch.cat([m.weight.detach().flatten() for m in convs]).std()) - 0.5) < 5e-3


def test_generator_depth():
    assert generator_depth("unet_256") == 8 and generator_depth("encoder_decoder_32") == 5
    assert generator_depth("resnet_9blocks") == 2
    assert generator_depth(_meta_G("unet_128", 3, 3)) == 7
    assert generator_depth(nn.Conv2d(1, 1, 1)) is None


@pytest.mark.parametrize("name", ["unet_48", "unet_16", "unet", "resnet_0blocks", "vgg"])
def test_bad_generator_names(name):
    with pytest.raises(ConfigError, match="--netG"):
        define_G(name, 3, 3)


@pytest.mark.parametrize("name", ["patch99", "n_layers:0", "n_layers:x"])
def test_bad_discriminator_names(name):
    with pytest.raises(ConfigError, match="--netD"):
        define_D(name, 6)


def test_bad_norm():
    with pytest.raises(ConfigError, match="--norm"):
        define_G("unet_32", 3, 3, norm="group")
