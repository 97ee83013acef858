"""The VGG16 convolution trunk shared by the Caffe-compatible FCN-8s and HED networks.

The thirteen 3x3 convolutions carry Caffe's layer names (``conv1_1`` .. ``conv5_3``) as attribute names,
so a state dict has keys such as ``conv1_1.weight`` and a caffemodel's blobs map onto it by name. Only
``conv1_1``'s padding differs between the networks (FCN-8s: 100, HED: 35); the others pad 1. Max pooling
is 2x2 stride 2 rounding up (Caffe's pooling always rounds up: ``ceil_mode=True``).

``width`` scales every channel count (``round(c * width)``, at least 1) for reduced-width variants used
in tests and demos; ``width=1.0`` is the published network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: (block, number of convolutions, output channels at width 1)
VGG16_BLOCKS: tuple[tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))

#: Caffe names of the 13 convolutions, in order.
VGG16_CONV_NAMES: tuple[str, ...] = tuple(f"conv{b}_{i}" for b, n, _ in VGG16_BLOCKS for i in range(1, n + 1))

#: torchvision ``vgg16().features`` index of each convolution (for VGG16 initialisation).
TORCHVISION_FEATURE_INDEX: dict[str, int] = dict(zip(VGG16_CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)))


def scaled(channels: int, width: float) -> int:
    """``channels`` scaled by ``width`` (rounded, at least 1)."""
    return max(1, int(round(channels * width)))


class VGG16Trunk(nn.Module):
    """conv1_1 .. conv5_3 with ReLUs and ceil-mode 2x2 max pooling.

    Args:
        first_pad: padding of ``conv1_1`` (FCN-8s 100, HED 35).
        width: channel multiplier (1.0 = VGG16).
        in_channels: input channels (3 for BGR images).
    """

    def __init__(self, first_pad: int, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = float(width)
        c_in = in_channels
        for block, count, channels in VGG16_BLOCKS:
            c_out = scaled(channels, width)
            for i in range(1, count + 1):
                pad = first_pad if (block, i) == (1, 1) else 1
                setattr(self, f"conv{block}_{i}", nn.Conv2d(c_in, c_out, 3, padding=pad))
                c_in = c_out
        self.out_channels = c_in

    def block_channels(self) -> list[int]:
        """Output channels of the five blocks (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3)."""
        return [scaled(c, self.width) for _, _, c in VGG16_BLOCKS]

    def run_blocks(self, x: torch.Tensor, *, pool_last: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the trunk.

        Args:
            x: (N, C, H, W) float input.
            pool_last: also max-pool block 5 (FCN's pool5; HED has no pool5).

        Returns:
            (blocks, pools): the five ReLU'd block outputs, and the pooled outputs ``pool1`` ..
            ``pool4`` (plus ``pool5`` with ``pool_last``).
        """
        blocks: list[torch.Tensor] = []
        pools: list[torch.Tensor] = []
        for block, count, _ in VGG16_BLOCKS:
            for i in range(1, count + 1):
                x = F.relu(getattr(self, f"conv{block}_{i}")(x), inplace=True)
            blocks.append(x)
            if block < 5 or pool_last:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
                pools.append(x)
        return blocks, pools
