"""DRN-D-105 for semantic segmentation, with the structure and state-dict keys of fyu/drn's ``DRNSeg``.

Structure (Yu, Koltun & Funkhouser, "Dilated Residual Networks"; facts read from fyu/drn's
``drn.py`` / ``segment.py``, BSD-3; the code here is ours):

- ``base`` = ``drn_d_105`` without its average pool and classifier, a ``Sequential`` of 9 stages:
  0: conv 7x7 (3 -> 16, pad 3) + BN + ReLU; 1: conv 3x3 (16) + BN + ReLU; 2: conv 3x3 stride 2 (32)
  + BN + ReLU; 3: 3 bottlenecks (64 -> 256, stride 2); 4: 4 bottlenecks (128 -> 512, stride 2);
  5: 23 bottlenecks (256 -> 1024, dilation 2); 6: 3 bottlenecks (512 -> 2048, dilation 4);
  7: conv 3x3 dilation 2 (512) + BN + ReLU; 8: conv 3x3 (512) + BN + ReLU. Convolutions have no bias.
- A bottleneck: 1x1 conv -> BN -> ReLU -> 3x3 conv (stride, dilation d, pad d) -> BN -> ReLU -> 1x1
  conv (x4 channels) -> BN, plus the input (through ``downsample`` = 1x1 conv + BN where the stride
  or the width changes), then ReLU. Stride 2 sits in the first block's 3x3 conv.
- ``seg``: 1x1 conv 512 -> classes (with bias); ``up``: ``ConvTranspose2d(classes, classes, 16,
  stride 8, padding 4, groups=classes, bias=False)``, weight (classes, 1, 16, 16) holding bilinear
  kernels (``fill_up_weights``) that are part of the published file and loaded from it.

Input: (N, 3, H, W) RGB in [0, 1] normalised by the Cityscapes mean/std (see
:mod:`p2ptools.eval.drn_scorer`). :meth:`DRNSeg.forward` returns the ``up`` output, (N, classes,
8 * ceil(H / 8), 8 * ceil(W / 8)) logits (fyu/drn's module returns their log-softmax); output pixel
``i`` is aligned with input pixel ``i``, so cropping to (H, W) keeps the geometry.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from p2ptools.errors import CheckpointError

#: Bottleneck blocks of stages 3-6 in DRN-D-105, and the stage widths (before the x4 expansion).
DRN_D_105_BLOCKS: tuple[int, int, int, int] = (3, 4, 23, 3)
DRN_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 512, 512)
EXPANSION = 4


def _conv_bn_relu(cin: int, cout: int, kernel: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 (x4) with batch norm and a residual connection."""

    def __init__(self, cin: int, planes: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = planes * EXPANSION
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def _stage(cin: int, planes: int, blocks: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    layers = [Bottleneck(cin, planes, stride=stride, dilation=dilation)]
    layers += [Bottleneck(planes * EXPANSION, planes, dilation=dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def bilinear_up_weight(classes: int, size: int = 16) -> torch.Tensor:
    """(classes, 1, size, size) bilinear kernels, the values of fyu/drn's ``fill_up_weights``."""
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    taps = 1 - (torch.arange(size, dtype=torch.float64) / f - c).abs()
    return (taps[:, None] * taps[None, :]).float().expand(classes, 1, size, size).clone()


class DRNSeg(nn.Module):
    """DRN-D-105 segmentation network (``base``, ``seg``, ``up``) with ``num_classes`` outputs."""

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        c = DRN_CHANNELS
        b3, b4, b5, b6 = DRN_D_105_BLOCKS
        self.base = nn.Sequential(
            _conv_bn_relu(3, c[0], 7),
            _conv_bn_relu(c[0], c[0], 3),
            _conv_bn_relu(c[0], c[1], 3, stride=2),
            _stage(c[1], c[2], b3, stride=2),
            _stage(c[2] * EXPANSION, c[3], b4, stride=2),
            _stage(c[3] * EXPANSION, c[4], b5, dilation=2),
            _stage(c[4] * EXPANSION, c[5], b6, dilation=4),
            _conv_bn_relu(c[5] * EXPANSION, c[6], 3, dilation=2),
            _conv_bn_relu(c[6], c[7], 3),
        )
        self.seg = nn.Conv2d(c[7], self.num_classes, 1, bias=True)
        self.up = nn.ConvTranspose2d(self.num_classes, self.num_classes, 16, stride=8, padding=4, groups=self.num_classes, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_up_weight(self.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised RGB -> (N, classes, 8 ceil(H/8), 8 ceil(W/8)) logits."""
        return self.up(self.seg(self.base(x)))

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor], source: str | Path, num_classes: int = 19) -> DRNSeg:
        """A network holding ``tensors`` (checked first: errors name ``source`` and the first bad key),
        built without the cost of a random initialisation that would be overwritten."""
        check_drn_state_dict(tensors, drn_expected_shapes(num_classes), source)
        with torch.device("meta"):
            net = cls(num_classes)
        net = net.to_empty(device="cpu")
        net.load_checked(tensors, source)
        return net

    def load_checked(self, tensors: Mapping[str, torch.Tensor], source: str | Path) -> None:
        """Load a state dict after checking every key and shape (errors name the first bad key)."""
        check_drn_state_dict(tensors, drn_expected_shapes(self.num_classes), source)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for key, value in self.state_dict().items():
                value.copy_(tensors[key].to(value.dtype))


def drn_expected_shapes(num_classes: int = 19) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of :class:`DRNSeg` (computed once on the meta device), in network order."""
    return dict(_shapes(int(num_classes)))


@lru_cache(maxsize=4)
def _shapes(num_classes: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        net = DRNSeg(num_classes)
    return tuple((key, tuple(t.shape)) for key, t in net.state_dict().items())


def check_drn_state_dict(tensors: Mapping[str, object], shapes: Mapping[str, tuple[int, ...]], source: str | Path) -> None:
    """Raise a CheckpointError naming ``source`` and the first missing, mis-shaped or unexpected key."""
    for key, shape in shapes.items():
        if key not in tensors:
            raise CheckpointError(source, f"not DRN-D-105 segmentation weights: missing key {key!r} (expected shape {shape}); {len(tensors)} keys found, e.g. {', '.join(list(tensors)[:3]) or 'none'}")
        value = tensors[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(source, f"key {key!r} holds a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(source, f"key {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)} (DRN-D-105 with {shapes['seg.bias'][0]} classes)")
    extra = [k for k in tensors if k not in shapes]
    if extra:
        raise CheckpointError(source, f"unexpected key {extra[0]!r} for DRN-D-105 segmentation weights ({len(extra)} unexpected in all)")
