"""Weight files with the exact layouts of the published FID / LPIPS files, random values (no
download): the tests' stand-ins for pt_inception-2015-12-05, alexnet-owt and vgg16."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def randomize(net: nn.Module, seed: int) -> nn.Module:
    """He-scaled convolutions and non-trivial BatchNorm statistics, so features stay in range."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):  # linear layers keep torch's init (only Inception's unused fc has one that matters)
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.05)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=gen))
                module.bias.copy_(0.05 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.05 * torch.randn(c, generator=gen))
                module.running_var.copy_(0.8 + 0.4 * torch.rand(c, generator=gen))
    return net


def make_inception_file(path: Path, seed: int = 0) -> Path:
    """A state dict with the layout of pt_inception-2015-12-05-6726825d.pth: pytorch-fid's
    architecture (``fid_inception_v3`` without its download), random values."""
    from p2ptools.metrics.inception import fid_inception_v3

    torch.save(randomize(fid_inception_v3(), seed).state_dict(), path)
    return path


def make_torchvision_file(path: Path, name: str, seed: int = 0) -> Path:
    """torchvision's alexnet / vgg16 state dict layout with random values (vgg16: ``features.*``
    only, the 500 MB of classifier are never read)."""
    import torchvision

    if name == "vgg16":  # the features only: building the classifier costs seconds and is never read
        from torchvision.models.vgg import cfgs, make_layers

        net = nn.Module()
        net.features = make_layers(cfgs["D"])
    else:
        net = getattr(torchvision.models, name)(weights=None)
    torch.save(randomize(net, seed).state_dict(), path)
    return path
