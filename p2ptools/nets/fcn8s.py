"""FCN-8s with the exact structure of the Caffe model pix2pix scores Cityscapes with.

Structure (Long, Shelhamer & Darrell's FCN-8s, as in ``fcn-8s-cityscapes.caffemodel``): VGG16
``conv1_1`` .. ``conv5_3`` (``conv1_1`` pad 100, the rest pad 1, ReLU after each), ceil-mode 2x2 max
pooling after each block, ``fc6_cs`` (4096, 7x7, pad 0), ``fc7_cs`` (4096, 1x1), ``score_fr`` (20
classes, 1x1); ``upscore2`` (4x4 stride 2 deconvolution, no bias) summed with ``score_pool4`` cropped
at offset 5; ``upscore_pool4`` (4x4 stride 2, no bias) summed with ``score_pool3`` cropped at offset 9;
``upscore8`` (16x16 stride 8, no bias) cropped at offset 31 to the input size. The deconvolutions are
learned weights loaded from the file. Dropout (0.5 after fc6/fc7, as in FCN training) acts only in
training mode.

Input: (N, 3, H, W) float32 BGR with the mean subtracted and no scaling (see
:mod:`p2ptools.eval.scorer`); output: (N, num_classes, H, W) scores for every H, W >= 1.

Module attribute names are the Caffe layer names, so state-dict keys are ``<layer>.weight`` /
``<layer>.bias``, and Caffe blobs (conv (out, in, kh, kw) + bias; deconv (in, out, kh, kw), which is
``ConvTranspose2d.weight``) load as they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p2ptools.caffe import fit_blob
from p2ptools.errors import CheckpointError
from p2ptools.nets.vgg import VGG16_CONV_NAMES, VGG16Trunk, scaled

#: Caffe layer names with weights, in network order.
FCN8S_LAYERS: tuple[str, ...] = VGG16_CONV_NAMES + (
    "fc6_cs", "fc7_cs", "score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8",
)  # fmt: skip
#: The deconvolution layers (one blob, no bias).
FCN8S_DECONVS: tuple[str, ...] = ("upscore2", "upscore_pool4", "upscore8")
#: Crop offsets of score_pool4, score_pool3 and the final output (Caffe's computed offsets).
CROP_POOL4, CROP_POOL3, CROP_OUT = 5, 9, 31


class FCN8s(VGG16Trunk):
    """FCN-8s; ``num_classes`` score channels (20 for the Cityscapes model), ``width`` channel multiplier."""

    def __init__(self, num_classes: int = 20, width: float = 1.0) -> None:
        super().__init__(first_pad=100, width=width)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        c3, c4, c5 = self.block_channels()[2:]
        fc = scaled(4096, width)
        k = self.num_classes
        self.fc6_cs = nn.Conv2d(c5, fc, 7)
        self.fc7_cs = nn.Conv2d(fc, fc, 1)
        self.score_fr = nn.Conv2d(fc, k, 1)
        self.upscore2 = nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(c4, k, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)
        self.score_pool3 = nn.Conv2d(c3, k, 1)
        self.upscore8 = nn.ConvTranspose2d(k, k, 16, stride=8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) mean-subtracted BGR -> (N, num_classes, H, W) class scores."""
        height, width = x.shape[-2:]
        _, pools = self.run_blocks(x, pool_last=True)
        pool3, pool4, pool5 = pools[2], pools[3], pools[4]
        h = F.dropout(F.relu(self.fc6_cs(pool5), inplace=True), 0.5, self.training)
        h = F.dropout(F.relu(self.fc7_cs(h), inplace=True), 0.5, self.training)
        up = self.upscore2(self.score_fr(h))
        up = up + _crop(self.score_pool4(pool4), CROP_POOL4, up.shape[-2:])
        up = self.upscore_pool4(up)
        up = up + _crop(self.score_pool3(pool3), CROP_POOL3, up.shape[-2:])
        return _crop(self.upscore8(up), CROP_OUT, (height, width))

    # ------------------------------------------------------------------------------- weights

    def init_for_training(self) -> None:
        """FCN's training initialisation: score layers zero, deconvolutions bilinear (and learned),
        the trunk and fc layers Kaiming-normal with zero biases."""
        for name in FCN8S_LAYERS:
            module = getattr(self, name)
            if name in FCN8S_DECONVS:
                with torch.no_grad():
                    module.weight.copy_(bilinear_kernel(self.num_classes, module.kernel_size[0]))
            elif name.startswith("score"):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def load_caffe_blobs(self, blobs: Mapping[str, list[np.ndarray]], source: str | Path) -> None:
        """Copy a caffemodel's blobs (:func:`p2ptools.caffe.read_caffemodel`) into this network.

        Raises:
            CheckpointError: a missing layer, a wrong number of blobs, or a wrong shape, naming
                ``source``, the layer and both shapes.
        """
        tensors = caffe_blobs_to_state_dict(blobs, self.num_classes, self.width, source)
        self.load_checked(tensors, source)

    def load_checked(self, tensors: Mapping[str, np.ndarray | torch.Tensor], source: str | Path) -> None:
        """Load a state dict after checking its keys and shapes (errors name the first bad layer)."""
        check_state_dict(tensors, expected_shapes(self.num_classes, self.width), source)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only memory-mapped arrays: only read here
            for key, param in self.state_dict().items():
                value = tensors[key]
                value = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
                param.copy_(value.to(param.dtype))


def _crop(x: torch.Tensor, offset: int, size) -> torch.Tensor:
    h, w = int(size[0]), int(size[1])
    return x[:, :, offset : offset + h, offset : offset + w]


def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """(channels, channels, size, size) deconvolution weight doing per-channel bilinear upsampling."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = filt1d[:, None] * filt1d[None, :]
    return weight


def expected_shapes(num_classes: int, width: float) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of an FCN8s, computed on the meta device (nothing allocated)."""
    with torch.device("meta"):
        net = FCN8s(num_classes, width)
    return {key: tuple(t.shape) for key, t in net.state_dict().items()}


def caffe_layer_shapes(num_classes: int = 20, width: float = 1.0) -> dict[str, list[tuple[int, ...]]]:
    """Caffe layer name -> its blob shapes (weight[, bias]) for FCN-8s, in network order."""
    shapes = expected_shapes(num_classes, width)
    return {name: [shapes[f"{name}.weight"]] + ([shapes[f"{name}.bias"]] if f"{name}.bias" in shapes else []) for name in FCN8S_LAYERS}


def infer_config(shapes: Mapping[str, tuple[int, ...]], source: str | Path) -> tuple[int, float]:
    """(num_classes, width) of FCN-8s weights from the shapes of ``conv1_1.weight`` and
    ``score_fr.weight`` (state-dict keys) or of layers ``conv1_1`` / ``score_fr``."""
    def shape_of(layer: str) -> tuple[int, ...]:
        for key in (f"{layer}.weight", layer):
            if key in shapes:
                return tuple(shapes[key])
        raise CheckpointError(source, f"not FCN-8s weights: missing layer {layer!r} (layers found: {_few(shapes)})")

    conv1 = shape_of("conv1_1")
    score = shape_of("score_fr")
    if len(conv1) != 4 or conv1[1] != 3 or len(score) < 2:
        raise CheckpointError(source, f"not FCN-8s weights: layer 'conv1_1' has shape {conv1}, expected (64, 3, 3, 3)")
    return int(score[0]), conv1[0] / 64.0


def _few(names) -> str:
    names = list(names)
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "") if names else "none"


def require_layers(blobs: Mapping[str, object], source: str | Path) -> None:
    """Raise a CheckpointError naming the first FCN-8s layer missing from a caffemodel's layers."""
    missing = [name for name in FCN8S_LAYERS if name not in blobs]
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:4])}{', ...' if len(missing) > 4 else ''})" if len(missing) > 1 else ""
        raise CheckpointError(source, f"not an FCN-8s caffemodel: missing layer {missing[0]!r}{more}; layers with weights: {_few(blobs)}")


def caffe_blobs_to_state_dict(blobs: Mapping[str, list[np.ndarray]], num_classes: int, width: float, source: str | Path) -> dict[str, np.ndarray]:
    """Map caffemodel blobs to FCN8s state-dict arrays (views, not copies), checking every layer.

    Raises:
        CheckpointError: naming ``source`` and the first missing or mismatching layer.
    """
    out: dict[str, np.ndarray] = {}
    require_layers(blobs, source)
    for name, shapes in caffe_layer_shapes(num_classes, width).items():
        layer_blobs = blobs[name]
        if len(layer_blobs) != len(shapes):
            raise CheckpointError(source, f"layer {name!r} has {len(layer_blobs)} blob(s), expected {len(shapes)} ({'weight' if len(shapes) == 1 else 'weight and bias'})")
        for index, (blob, shape) in enumerate(zip(layer_blobs, shapes)):
            out[f"{name}.{'weight' if index == 0 else 'bias'}"] = fit_blob(blob, shape, layer=name, path=source, index=index)
    return out


def check_state_dict(tensors: Mapping[str, np.ndarray | torch.Tensor], shapes: Mapping[str, tuple[int, ...]], source: str | Path) -> None:
    """Raise a CheckpointError naming the first missing, unexpected or wrongly shaped key."""
    for key, shape in shapes.items():
        if key not in tensors:
            raise CheckpointError(source, f"not FCN-8s weights: missing layer {key.rsplit('.', 1)[0]!r} ({key}); found: {_few(tensors)}")
        got = tuple(tensors[key].shape)
        if got != tuple(shape):
            raise CheckpointError(source, f"layer {key.rsplit('.', 1)[0]!r} ({key}) has shape {got}, expected {tuple(shape)}")
    extra = [k for k in tensors if k not in shapes]
    if extra:
        raise CheckpointError(source, f"unexpected tensors for FCN-8s: {_few(extra)}")
