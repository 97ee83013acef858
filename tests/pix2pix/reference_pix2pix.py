"""An independent re-implementation of the pix2pix reference U-Net, written from GUIDE.md section 3.

Used by the tests as the "reference side": it must not import p2ptools_pix2pix. The layout is the
reference's nested blocks (``model.model.0.weight``, ``model.model.1.model.1.weight``, ...):

- outermost level: [conv, inner, ReLU, convT (bias), Tanh]
- innermost level: [LeakyReLU, conv, ReLU, convT, norm]
- other levels:    [LeakyReLU, conv, norm, inner, ReLU, convT, norm, (Dropout)]

Convolutions have a bias only with instance norm; ``norm="none"`` follows the reference too
(Identity layers and no biases).
"""

from __future__ import annotations

import torch
from torch import nn


class RefLevel(nn.Module):
    def __init__(self, layers: list[nn.Module], concat: bool) -> None:
        super().__init__()
        self.concat = concat
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return torch.cat([x, y], 1) if self.concat else y


class RefUnet(nn.Module):
    """Reference UnetGenerator(input_nc, output_nc, num_downs, ngf, norm, use_dropout)."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: str = "batch", use_dropout: bool = False) -> None:
        super().__init__()
        if norm == "batch":
            def make_norm(c): return nn.BatchNorm2d(c)
        elif norm == "instance":
            def make_norm(c): return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
        else:
            def make_norm(c): return nn.Identity()
        bias = norm == "instance"
        # encoder widths per level, outermost first
        widths = [ngf, ngf * 2, ngf * 4] + [ngf * 8] * (num_downs - 3)
        level = None
        for depth in range(num_downs, 0, -1):  # innermost first
            inner = widths[depth - 1]
            outer = output_nc if depth == 1 else widths[depth - 2]
            src = input_nc if depth == 1 else outer
            down = nn.Conv2d(src, inner, 4, 2, 1, bias=bias)
            if depth == num_downs:
                layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), make_norm(outer)]
            elif depth == 1:
                layers = [down, level, nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.LeakyReLU(0.2), down, make_norm(inner), level, nn.ReLU(),
                          nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias), make_norm(outer)]
                # dropout in the num_downs - 5 levels right above the innermost one
                if use_dropout and depth >= 5:
                    layers.append(nn.Dropout(0.5))
            level = RefLevel(layers, concat=depth != 1)
        self.model = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefResBlock(nn.Module):
    def __init__(self, dim: int, make_norm, bias: bool, use_dropout: bool) -> None:
        super().__init__()
        body = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim), nn.ReLU()]
        body += [nn.Dropout(0.5)] if use_dropout else []
        body += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    """Reference ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks), reflect padding."""

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch", use_dropout: bool = False, n_blocks: int = 9) -> None:
        super().__init__()
        if norm == "batch":
            def make_norm(c): return nn.BatchNorm2d(c)
        else:
            def make_norm(c): return nn.InstanceNorm2d(c)
        bias = norm == "instance"
        seq = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), make_norm(ngf), nn.ReLU()]
        seq += [nn.Conv2d(ngf, 2 * ngf, 3, 2, 1, bias=bias), make_norm(2 * ngf), nn.ReLU()]
        seq += [nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1, bias=bias), make_norm(4 * ngf), nn.ReLU()]
        seq += [RefResBlock(4 * ngf, make_norm, bias, use_dropout) for _ in range(n_blocks)]
        seq += [nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, output_padding=1, bias=bias), make_norm(2 * ngf), nn.ReLU()]
        seq += [nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1, bias=bias), make_norm(ngf), nn.ReLU()]
        seq += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights of a usable scale and random batch-norm running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 10000, (1,), generator=g)))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif t.dim() == 1 and name.endswith("weight"):  # norm scale
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:  # biases
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            else:
                fan_in = t.shape[1] * t.shape[2] * t.shape[3]
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return net
