"""pix2pix generators and discriminators, with the reference implementation's layer layout.

The U-Net is built from nested :class:`UnetSkipConnectionBlock` modules exactly like the PyTorch
pix2pix reference, so a reference ``latest_net_G.pth`` loads into it key for key
(``model.model.0.weight``, ``model.model.1.model.1.weight``, ..., the outermost up-convolution
``model.model.3.{weight,bias}``). Parameter counts equal the reference's (GUIDE.md section 3):
``unet_256`` with batch norm has 54,413,955 parameters, the 70x70 PatchGAN on 6 channels 2,768,705.

Names (the single source of truth, see :func:`define_G` / :func:`define_D`):

- generators: ``unet_<N>`` (N a power of two >= 32, log2(N) down-samplings), ``encoder_decoder_<N>``
  (the same network without skip connections: the paper's Table 2), ``resnet_9blocks``,
  ``resnet_6blocks``;
- discriminators: ``pixel`` (1x1 "PixelGAN"), ``patch16``, ``patch70``, ``patch286`` ("ImageGAN" on
  256 images), ``n_layers:<K>``;
- norms: ``batch``, ``instance`` (no affine, no running statistics, as the reference), ``none``,
  ``syncbatch`` (:class:`torch.nn.SyncBatchNorm`; plain batch norm on one process).

Every network takes and returns NCHW float tensors; generators map inputs in [-1, 1] to outputs in
[-1, 1] (tanh).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.training.weights_init import init_weights as init_network

NormFactory = Callable[[int], nn.Module]

#: Discriminator aliases: the paper's receptive fields -> reference ``n_layers``.
PATCH_LAYERS = {"patch16": 1, "patch70": 3, "patch286": 5}


# --- normalization ------------------------------------------------------------------------------


def norm_factory(norm: str) -> tuple[NormFactory, bool]:
    """``(make_norm(channels), conv_bias)`` for a norm name.

    Convolutions carry a bias only when no batch statistics follow them: with ``instance`` (the
    reference's rule) and with ``none``. ``none`` puts an :class:`~torch.nn.Identity` where the
    norm would be, so layer indices (and state-dict keys) stay those of the other norms.

    Deliberate difference from the reference: its ``--norm none`` convolutions have no bias (its
    ``use_bias`` is true for instance norm only), which leaves unnormalised layers unable to shift
    their outputs; ours have one. A reference file imports exactly all the same: the importer
    adds zero biases, which compute the reference's function (``tests/pix2pix/test_reference_import``).
    """
    if norm == "batch":
        return (lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)), False
    if norm == "syncbatch":
        return (lambda c: nn.SyncBatchNorm(c, affine=True, track_running_stats=True)), False
    if norm == "instance":
        return (lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)), True
    if norm == "none":
        return (lambda c: nn.Identity()), True
    raise ConfigError(f"--norm: invalid value {norm!r}; choose from batch, instance, none, syncbatch")


# --- U-Net and encoder-decoder ------------------------------------------------------------------


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down-convolution, the inner levels, up-convolution.

    Layout of ``self.model`` (the reference's indices):

    - outermost: ``[down-conv, inner, ReLU, up-conv (bias), Tanh]``;
    - innermost: ``[LeakyReLU, down-conv, ReLU, up-conv, norm]``;
    - other levels: ``[LeakyReLU, down-conv, norm, inner, ReLU, up-conv, norm, (Dropout 0.5)]``.

    With ``skip`` the level returns ``cat([x, f(x)])`` (channels ``outer_nc * 2``), without it
    ``f(x)`` (the encoder-decoder); outermost levels never concatenate.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        *,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        make_norm: NormFactory,
        conv_bias: bool,
        dropout: bool = False,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        self.skip = skip
        input_nc = outer_nc if input_nc is None else input_nc
        # the up-convolution sees the inner level's output: concatenated with its input if skipping
        up_in = inner_nc if innermost or not skip else inner_nc * 2
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=conv_bias)
        # in place as the reference: the skip then carries LeakyReLU(x), which the parent's ReLU
        # turns into ReLU(x) exactly as it would x itself
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=conv_bias)
            layers = [downrelu, downconv, uprelu, upconv, make_norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=conv_bias)
            layers = [downrelu, downconv, make_norm(inner_nc), submodule, uprelu, upconv, make_norm(outer_nc)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost or not self.skip:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net (``skip=True``) or encoder-decoder (``skip=False``) with ``depth`` down-samplings.

    Encoder channels ``ngf, 2ngf, 4ngf, 8ngf`` then ``8ngf`` for the remaining levels; dropout in the
    ``depth - 5`` decoder levels right above the innermost one. Inputs must have height and width
    divisible by ``2 ** depth``.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        depth: int,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = True,
        skip: bool = True,
    ) -> None:
        super().__init__()
        if depth < 5:
            raise ConfigError(f"U-Net depth {depth} is too small: it needs at least 5 down-samplings (crop size >= 32)")
        self.depth = depth
        self.skip = skip
        make_norm, bias = norm_factory(norm)
        kw = {"make_norm": make_norm, "conv_bias": bias, "skip": skip}
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(depth - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, dropout=dropout, **kw)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, **kw)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) in [-1, 1] -> (N, output_nc, H, W) in [-1, 1]."""
        return self.model(x)


# --- ResNet generator ---------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``; conv_block = [pad, conv3, norm, ReLU, (Dropout), pad, conv3, norm]."""

    def __init__(self, dim: int, make_norm: NormFactory, conv_bias: bool, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=conv_bias), make_norm(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=conv_bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The reference ResnetGenerator: c7s1-ngf, two stride-2 down-samplings, ``n_blocks`` residual
    blocks at ``4 ngf`` channels, two up-samplings, c7s1-output_nc with bias, tanh."""

    depth = 2

    def __init__(
        self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch", dropout: bool = True, n_blocks: int = 9
    ) -> None:
        super().__init__()
        make_norm, bias = norm_factory(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), make_norm(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), make_norm(c * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, make_norm, bias, dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                make_norm(c // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) in [-1, 1], H and W multiples of 4 -> (N, output_nc, H, W)."""
        return self.model(x)


# --- discriminators -----------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4x4 convolutions (channels ndf, 2ndf, ... capped at 8ndf),
    one stride-1 4x4 convolution and a 1-channel 4x4 output convolution. Receptive field 16 / 70 /
    286 pixels for ``n_layers`` 1 / 3 / 5."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias = norm_factory(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias), make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) -> (N, 1, H', W') patch logits."""
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 "PixelGAN": 1x1 convolutions ndf -> 2ndf -> 1, receptive field one pixel."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias = norm_factory(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) -> (N, 1, H, W) per-pixel logits."""
        return self.net(x)


# --- factories ----------------------------------------------------------------------------------


def parse_netG(netG: str) -> tuple[str, int]:
    """``("unet" | "encoder_decoder" | "resnet", depth or n_blocks)`` for a generator name."""
    m = re.fullmatch(r"(unet|encoder_decoder)_(\d+)", netG)
    if m:
        size = int(m.group(2))
        if size < 32 or size & (size - 1):
            raise ConfigError(f"--netG {netG}: the size must be a power of two >= 32 (e.g. unet_256)")
        return m.group(1), int(math.log2(size))
    m = re.fullmatch(r"resnet_(\d+)blocks", netG)
    if m and int(m.group(1)) >= 1:
        return "resnet", int(m.group(1))
    raise ConfigError(f"--netG: invalid value {netG!r}; choose from unet_<N>, encoder_decoder_<N> (N power of 2 >= 32), resnet_9blocks, resnet_6blocks")


def parse_netD(netD: str) -> int:
    """``n_layers`` of a discriminator name (0 for ``pixel``)."""
    if netD == "pixel":
        return 0
    if netD in PATCH_LAYERS:
        return PATCH_LAYERS[netD]
    m = re.fullmatch(r"n_layers:(\d+)", netD)
    if m and int(m.group(1)) >= 1:
        return int(m.group(1))
    raise ConfigError(f"--netD: invalid value {netD!r}; choose from pixel, patch16, patch70, patch286, n_layers:<K>")


def define_G(netG: str, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch", dropout: bool = True, *,
             init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """A generator by name, initialised as the reference (default N(0, 0.02)).

    Args:
        netG: ``unet_<N>``, ``encoder_decoder_<N>``, ``resnet_9blocks`` or ``resnet_6blocks``.
        input_nc, output_nc: image channels in and out (1 or 3).
        ngf: filters of the first layer.
        norm: ``batch`` | ``instance`` | ``none`` | ``syncbatch``.
        dropout: dropout 0.5 in the decoder (U-Net) or the residual blocks (ResNet).
        init_type, init_gain: see :func:`p2ptools.training.weights_init.init_weights`.

    Returns:
        A module mapping (N, input_nc, H, W) in [-1, 1] to (N, output_nc, H, W) in [-1, 1].

    >>> count_parameters(define_G("unet_256", 3, 3))
    54413955
    """
    kind, n = parse_netG(netG)
    if kind == "resnet":
        net: nn.Module = ResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks=n)
    else:
        net = UnetGenerator(input_nc, output_nc, n, ngf, norm, dropout, skip=kind == "unet")
    init_network(net, init_type, init_gain)
    return net


def define_D(netD: str, input_nc: int, ndf: int = 64, norm: str = "batch", *, init_type: str = "normal",
             init_gain: float = 0.02) -> nn.Module:
    """A discriminator by name, initialised as the reference (default N(0, 0.02)).

    ``input_nc`` is what D sees: input + output channels for a conditional GAN, output channels for
    an unconditional one. Output: (N, 1, H', W') logits, one per patch.
    """
    n_layers = parse_netD(netD)
    net = PixelDiscriminator(input_nc, ndf, norm) if n_layers == 0 else NLayerDiscriminator(input_nc, ndf, n_layers, norm)
    init_network(net, init_type, init_gain)
    return net


def init_weights(net: nn.Module, std: float = 0.02) -> None:
    """The reference's "normal" init: conv weights N(0, std), biases 0; batch-norm weights
    N(1, std), biases 0. Modifies ``net`` in place (``init_network(net, "normal", std)``)."""
    init_network(net, "normal", std)


def count_parameters(net: nn.Module) -> int:
    """Number of parameters (buffers such as running statistics excluded), as the reference prints."""
    return sum(p.numel() for p in net.parameters())


def _unwrap(net: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(net, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(net, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def generator_depth(netG: nn.Module | str) -> int | None:
    """Stride-2 down-samplings of a generator (by name or module): inputs must have height and
    width divisible by ``2 ** depth`` (8 for ``unet_256``, 2 for the ResNets). None if unknown."""
    if isinstance(netG, str):
        kind, n = parse_netG(netG)
        return 2 if kind == "resnet" else n
    return getattr(_unwrap(netG), "depth", None)


def receptive_field(netD: nn.Module | str) -> int:
    """Receptive field in pixels (side length) of one output of a discriminator.

    Computed from its convolutions, last to first: ``r <- (r - 1) * stride + kernel``
    (1 for ``pixel``, 16 / 70 / 286 for ``patch16`` / ``patch70`` / ``patch286``).
    """
    if isinstance(netD, str):
        netD = define_D(netD, 1, ndf=1, norm="none")
    convs = [m for m in _unwrap(netD).modules() if isinstance(m, nn.Conv2d)]
    r = 1
    for conv in reversed(convs):
        r = (r - 1) * conv.stride[0] + conv.kernel_size[0]
    return r


__all__ = [
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "count_parameters",
    "define_D",
    "define_G",
    "generator_depth",
    "init_weights",
    "norm_factory",
    "parse_netD",
    "parse_netG",
    "receptive_field",
]
