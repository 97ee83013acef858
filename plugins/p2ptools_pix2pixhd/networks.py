"""pix2pixHD networks with the official code's layer layout and state-dict key names.

- :class:`GlobalGenerator` (``global``): ReflectionPad(3) + conv 7x7 to ``ngf`` + norm + ReLU;
  ``n_downsample`` convs 3x3 stride 2 (channels doubling); ``n_blocks`` residual blocks; as many
  transposed convs 3x3 stride 2 (padding 1, output_padding 1); ReflectionPad(3) + conv 7x7 + Tanh.
  Keys ``model.<i>.{weight,bias}``, residual blocks ``model.<i>.conv_block.{1,5}.*``.
- :class:`LocalEnhancer` (``local``): the global generator at ``ngf * 2**n_local_enhancers``
  without its last three layers (``model.*``) runs on the input downsampled ``n_local_enhancers``
  times; each enhancer ``k`` has a front ``model<k>_1`` (7x7 conv + one stride-2 conv) whose
  features are added to the coarser result, then ``model<k>_2`` (residual blocks + one transposed
  conv, and in the finest enhancer the output layers).
- :class:`MultiscaleDiscriminator`: ``num_D`` PatchGAN discriminators (kernel 4, padding 2) on the
  input and its successive AvgPool(3, 2, 1, count_include_pad=False) downsamplings, each returning
  every intermediate feature map (keys ``scale<i>_layer<j>.*``; ``scale<num_D-1>`` sees full
  resolution, as in the official code).

Parameter counts equal the official figures (instance norm, 36 -> 3 channels): ``global`` at ngf 64
has 182,546,755 parameters in 56 state-dict tensors, ``local`` at ngf 32 182,857,059 in 74; the
multi-scale discriminator on 39 channels has 5,603,202 (num_D 2) and 8,404,803 (num_D 3).

Init as the official ``weights_init``: conv weights N(0, 0.02) (biases keep PyTorch's default),
batch-norm weights N(1, 0.02), biases 0. Instance norm has no affine parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from p2ptools.errors import ConfigError

NORMS = ("instance", "batch")
NormFactory = Callable[[int], nn.Module]


def norm_factory(norm: str) -> NormFactory:
    """A function ``channels -> norm layer`` for ``instance`` (no affine, no running stats) or ``batch``."""
    if norm == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True)
    raise ConfigError(f"--norm: invalid value {norm!r}; choose from {', '.join(NORMS)}")


def downsample_layer() -> nn.Module:
    """The 2x downsampling between scales: AvgPool2d(3, stride 2, padding 1, count_include_pad=False)."""
    return nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


class ResnetBlock(nn.Module):
    """``x + [ReflectionPad(1), conv 3x3, norm, ReLU, ReflectionPad(1), conv 3x3, norm](x)``."""

    def __init__(self, dim: int, norm: NormFactory) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _output_layers(ngf: int, output_nc: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]


def global_layers(input_nc: int, output_nc: int, ngf: int, n_downsample: int, n_blocks: int, norm: NormFactory) -> list[nn.Module]:
    """The layers of :class:`GlobalGenerator` in order (the last three are the output layers)."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
    for i in range(n_downsample):
        c = ngf * 2**i
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm(2 * c), nn.ReLU(True)]
    c = ngf * 2**n_downsample
    layers += [ResnetBlock(c, norm) for _ in range(n_blocks)]
    for i in range(n_downsample):
        c = ngf * 2 ** (n_downsample - i)
        layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1), norm(c // 2), nn.ReLU(True)]
    return layers + _output_layers(ngf, output_nc)


class GlobalGenerator(nn.Module):
    """The coarse-to-fine generator's global part, usable alone (``--netG global``).

    Args:
        input_nc, output_nc: channels in and out.
        ngf: filters of the first layer.
        n_downsample: stride-2 convolutions (official default 4); sizes must be multiples of 2**n.
        n_blocks: residual blocks at the bottom (9).
        norm: ``instance`` or ``batch``.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, n_downsample: int = 4, n_blocks: int = 9,
                 norm: str = "instance") -> None:
        super().__init__()
        self.model = nn.Sequential(*global_layers(input_nc, output_nc, ngf, n_downsample, n_blocks, norm_factory(norm)))
        self.size_multiple = 2**n_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LocalEnhancer(nn.Module):
    """Global generator plus ``n_local_enhancers`` local enhancers (``--netG local``).

    Args:
        ngf: filters of the finest enhancer; the global part runs at ``ngf * 2**n_local_enhancers``.
        n_downsample_global, n_blocks_global: the global part's :class:`GlobalGenerator` settings.
        n_local_enhancers: enhancers (each doubles the resolution; official default 1).
        n_blocks_local: residual blocks per enhancer (3).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 32, n_downsample_global: int = 4, n_blocks_global: int = 9,
                 n_local_enhancers: int = 1, n_blocks_local: int = 3, norm: str = "instance") -> None:
        super().__init__()
        if n_local_enhancers < 1:
            raise ConfigError(f"--n-local-enhancers must be at least 1, got {n_local_enhancers}")
        make_norm = norm_factory(norm)
        self.n_local_enhancers = n_local_enhancers
        ngf_global = ngf * 2**n_local_enhancers
        layers = global_layers(input_nc, output_nc, ngf_global, n_downsample_global, n_blocks_global, make_norm)
        self.model = nn.Sequential(*layers[:-3])  # the global part without its output layers
        for k in range(1, n_local_enhancers + 1):
            c = ngf * 2 ** (n_local_enhancers - k)
            front = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, c, 7), make_norm(c), nn.ReLU(True),
                     nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), make_norm(2 * c), nn.ReLU(True)]
            back: list[nn.Module] = [ResnetBlock(2 * c, make_norm) for _ in range(n_blocks_local)]
            back += [nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1), make_norm(c), nn.ReLU(True)]
            if k == n_local_enhancers:
                back += _output_layers(ngf, output_nc)
            setattr(self, f"model{k}_1", nn.Sequential(*front))
            setattr(self, f"model{k}_2", nn.Sequential(*back))
        self.downsample = downsample_layer()
        self.size_multiple = 2 ** (n_downsample_global + n_local_enhancers)

    def local_parameter_names(self) -> list[str]:
        """Names of the finest enhancer's parameters (``model<n>_*``): what ``--niter-fix-global`` trains alone."""
        prefix = f"model{self.n_local_enhancers}_"
        return [name for name, _ in self.named_parameters() if name.startswith(prefix)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for k in range(1, self.n_local_enhancers + 1):
            features = getattr(self, f"model{k}_1")(pyramid[self.n_local_enhancers - k])
            out = getattr(self, f"model{k}_2")(features + out)
        return out


def n_layer_blocks(input_nc: int, ndf: int, n_layers: int, norm: NormFactory) -> list[nn.Sequential]:
    """The blocks of one PatchGAN discriminator (kernel 4, padding 2), each a feature stage."""
    blocks = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2, True))]
    nf = ndf
    for _ in range(1, n_layers):
        prev, nf = nf, min(nf * 2, 512)
        blocks.append(nn.Sequential(nn.Conv2d(prev, nf, 4, stride=2, padding=2), norm(nf), nn.LeakyReLU(0.2, True)))
    prev, nf = nf, min(nf * 2, 512)
    blocks.append(nn.Sequential(nn.Conv2d(prev, nf, 4, stride=1, padding=2), norm(nf), nn.LeakyReLU(0.2, True)))
    blocks.append(nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=2)))
    return blocks


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs at successively halved resolutions, returning intermediate features.

    ``forward(x)`` returns one list per scale (full resolution first), each holding the outputs of
    the ``n_layers + 2`` stages; the last entry of each list is the patch prediction (logits).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2, norm: str = "instance") -> None:
        super().__init__()
        if num_D < 1 or n_layers < 1:
            raise ConfigError(f"--num-D and --n-layers-D must be at least 1, got {num_D} and {n_layers}")
        make_norm = norm_factory(norm)
        self.num_D, self.n_layers = num_D, n_layers
        for i in range(num_D):
            for j, block in enumerate(n_layer_blocks(input_nc, ndf, n_layers, make_norm)):
                setattr(self, f"scale{i}_layer{j}", block)
        self.downsample = downsample_layer()

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i in range(self.num_D):
            scale = self.num_D - 1 - i
            features, h = [], x
            for j in range(self.n_layers + 2):
                h = getattr(self, f"scale{scale}_layer{j}")(h)
                features.append(h)
            results.append(features)
            if i != self.num_D - 1:
                x = self.downsample(x)
        return results


def init_weights(net: nn.Module) -> None:
    """The official ``weights_init``: conv weights N(0, 0.02), batch-norm weights N(1, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def define_G(netG: str, input_nc: int, output_nc: int, *, ngf: int, n_downsample_global: int, n_blocks_global: int,
             n_local_enhancers: int, n_blocks_local: int, norm: str) -> nn.Module:
    """``global`` -> :class:`GlobalGenerator`, ``local`` -> :class:`LocalEnhancer`, initialised."""
    if netG == "global":
        net: nn.Module = GlobalGenerator(input_nc, output_nc, ngf, n_downsample_global, n_blocks_global, norm)
    elif netG == "local":
        net = LocalEnhancer(input_nc, output_nc, ngf, n_downsample_global, n_blocks_global, n_local_enhancers,
                            n_blocks_local, norm)
    else:
        raise ConfigError(f"--netG: invalid value {netG!r}; choose from global, local")
    init_weights(net)
    return net


def define_D(input_nc: int, *, ndf: int, n_layers: int, num_D: int, norm: str) -> MultiscaleDiscriminator:
    """A :class:`MultiscaleDiscriminator`, initialised."""
    net = MultiscaleDiscriminator(input_nc, ndf, n_layers, num_D, norm)
    init_weights(net)
    return net


def count_parameters(net: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in net.parameters())
