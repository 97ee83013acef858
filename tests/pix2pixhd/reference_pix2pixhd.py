"""An independent, minimal rewrite of the official pix2pixHD generators (NVIDIA/pix2pixHD
models/networks.py structure: one list of layers per Sequential, the global model's last three
layers cut off for the local enhancer), to produce official-layout state dicts in tests. It shares
no code with the plugin."""

from __future__ import annotations

import torch
from torch import nn


def _norm(c):
    return nn.InstanceNorm2d(c, affine=False)


class RefResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        block = []
        block += [nn.ReflectionPad2d(1)]
        block += [nn.Conv2d(dim, dim, kernel_size=3, padding=0), _norm(dim), nn.ReLU(True)]
        block += [nn.ReflectionPad2d(1)]
        block += [nn.Conv2d(dim, dim, kernel_size=3, padding=0), _norm(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class RefGlobalGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf=64, n_downsampling=3, n_blocks=9):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0), _norm(ngf), nn.ReLU(True)]
        for i in range(n_downsampling):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1), _norm(ngf * mult * 2), nn.ReLU(True)]
        mult = 2 ** n_downsampling
        for _ in range(n_blocks):
            model += [RefResnetBlock(ngf * mult)]
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            model += [nn.ConvTranspose2d(ngf * mult, int(ngf * mult / 2), kernel_size=3, stride=2, padding=1, output_padding=1),
                      _norm(int(ngf * mult / 2)), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RefLocalEnhancer(nn.Module):
    def __init__(self, input_nc, output_nc, ngf=32, n_downsample_global=3, n_blocks_global=9, n_local_enhancers=1, n_blocks_local=3):
        super().__init__()
        self.n_local_enhancers = n_local_enhancers
        ngf_global = ngf * (2 ** n_local_enhancers)
        model_global = RefGlobalGenerator(input_nc, output_nc, ngf_global, n_downsample_global, n_blocks_global).model
        model_global = [model_global[i] for i in range(len(model_global) - 3)]
        self.model = nn.Sequential(*model_global)
        for n in range(1, n_local_enhancers + 1):
            ngf_global = ngf * (2 ** (n_local_enhancers - n))
            down = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf_global, kernel_size=7, padding=0), _norm(ngf_global), nn.ReLU(True),
                    nn.Conv2d(ngf_global, ngf_global * 2, kernel_size=3, stride=2, padding=1), _norm(ngf_global * 2), nn.ReLU(True)]
            up = [RefResnetBlock(ngf_global * 2) for _ in range(n_blocks_local)]
            up += [nn.ConvTranspose2d(ngf_global * 2, ngf_global, kernel_size=3, stride=2, padding=1, output_padding=1),
                   _norm(ngf_global), nn.ReLU(True)]
            if n == n_local_enhancers:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
            setattr(self, "model" + str(n) + "_1", nn.Sequential(*down))
            setattr(self, "model" + str(n) + "_2", nn.Sequential(*up))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, x):
        downsampled = [x]
        for _ in range(self.n_local_enhancers):
            downsampled.append(self.downsample(downsampled[-1]))
        out = self.model(downsampled[-1])
        for n in range(1, self.n_local_enhancers + 1):
            out = getattr(self, "model" + str(n) + "_2")(getattr(self, "model" + str(n) + "_1")(downsampled[self.n_local_enhancers - n]) + out)
        return out


def randomize(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()
