"""The pix2pix generator as an exportable graph (:class:`p2ptools.plugin.Graph`).

The graph computes what :meth:`Pix2PixModel.translate` computes for the semantics the run was
loaded with:

- ``eval_mode``: ``G.eval()``: batch norm with its running statistics, dropout off. One input.
- default (the reference's test-time noise, see :mod:`p2ptools_pix2pix.model`): every batch norm
  normalises each image by its own statistics (instance normalisation with the batch norm's scale
  and shift), and each dropout layer multiplies by a mask given as a graph input
  (``dropout_0``, ... in the order the layers run), because the masks ``translate`` draws (from a
  generator seeded by the seed and the image's content) cannot be drawn inside an ONNX graph.
  :func:`dropout_masks` draws exactly those masks; masks of ones turn dropout off.

Instance norm (``--norm instance``) and ``--norm none`` are the same in both semantics.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p2ptools.plugin import Graph

if TYPE_CHECKING:
    from p2ptools_pix2pix.model import Pix2PixModel


class _PerImageBatchNorm(nn.Module):
    """Batch norm over one image: instance norm with the batch norm's affine parameters (as
    ``translate`` computes it at test time by default)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, None, None, self.weight, self.bias, use_input_stats=True, eps=self.eps)


class _MaskDropout(nn.Module):
    """Dropout whose (already scaled) keep-mask comes from the graph's inputs: ``x * masks[index]``."""

    def __init__(self, masks: list, p: float) -> None:
        super().__init__()
        self.masks, self.p, self.index = masks, p, -1  # the shared list of the current masks; index set by probing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index < 0:  # probing: record the call order and shape
            self.masks.append((self, tuple(x.shape)))
            return x
        return x * self.masks[self.index]


class _NoiseGraph(nn.Module):
    """``forward(x, *masks)``: the generator with per-image batch norm and given dropout masks."""

    def __init__(self, net: nn.Module, masks: list) -> None:
        super().__init__()
        self.net, self._masks = net, masks

    def forward(self, x: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor:
        self._masks[:] = masks
        try:
            return self.net(x)
        finally:
            self._masks.clear()


def _replace(net: nn.Module, masks: list) -> list[_MaskDropout]:
    """Swap batch norms and dropouts of ``net`` in place; return the dropout stand-ins."""
    drops = []
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, _PerImageBatchNorm(child))
            elif isinstance(child, nn.Dropout):
                stand_in = _MaskDropout(masks, child.p)
                setattr(parent, name, stand_in)
                drops.append(stand_in)
    return drops


def _probe(module: _NoiseGraph, drops: list[_MaskDropout], in_channels: int, unit: int) -> list[tuple[int, int, float]]:
    """Number the dropouts in the order they run; return (channels, stride, p) of each."""
    if not drops:
        return []
    size = unit * -(-32 // unit)  # at least 32 px: every normalised map has more than one pixel
    with torch.inference_mode():
        module.net(torch.zeros(1, in_channels, size, size))
    calls, module._masks[:] = list(module._masks), []
    if sorted(id(d) for d, _ in calls) != sorted(id(d) for d in drops):
        raise RuntimeError("every dropout layer must run exactly once per forward pass")
    specs = []
    for index, (drop, shape) in enumerate(calls):
        drop.index = index
        specs.append((shape[1], size // shape[2], drop.p))
    return specs


def dropout_masks(seeds: Sequence[int], specs: Sequence[tuple[int, int, float]], height: int, width: int) -> list[np.ndarray]:
    """The scaled keep-masks ``translate`` draws for images seeded ``seeds`` (one per image), one
    (N, C, H / stride, W / stride) float32 array per dropout layer in running order."""
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    masks = []
    for channels, stride, p in specs:
        keep = 1.0 - p
        shape = (channels, height // stride, width // stride)
        if p == 0.0:
            per_image = [torch.ones(shape) for _ in generators]
        elif keep == 0.0:
            per_image = [torch.zeros(shape) for _ in generators]
        else:
            per_image = [torch.empty(shape, dtype=torch.float32).bernoulli_(keep, generator=g).div_(keep) for g in generators]
        masks.append(torch.stack(per_image).numpy())
    return masks


def build_graph(model: Pix2PixModel) -> Graph:
    """The :class:`Graph` of a loaded pix2pix model (module docstring)."""
    from p2ptools_pix2pix.model import image_seed

    options = model.options
    net = copy.deepcopy(model.netG).cpu().float()
    unit = model.size_multiple
    if model.eval_mode:
        module, specs = net.eval(), []
    else:
        masks: list = []
        drops = _replace(net, masks)
        module = _NoiseGraph(net, masks).eval()
        specs = _probe(module, drops, options.input_nc, unit)
    names = ("input", *(f"dropout_{i}" for i in range(len(specs))))
    strides = ((options.input_nc, 1), *((c, s) for c, s, _ in specs))

    def feeds(images: Sequence[np.ndarray], extras: Sequence[Mapping[str, np.ndarray]] = ()) -> dict[str, np.ndarray]:
        for image in images:
            model.check_image(image)
        batch = np.stack([im.reshape(im.shape[0], im.shape[1], -1) for im in images]).transpose(0, 3, 1, 2)
        x = ((batch.astype(np.float32) / np.float32(255.0)) - np.float32(0.5)) / np.float32(0.5)
        out = {"input": np.ascontiguousarray(x)}
        if specs:
            seeds = [image_seed(model.seed, im) for im in images]
            out.update(zip(names[1:], dropout_masks(seeds, specs, x.shape[2], x.shape[3]), strict=True))
        return out

    if model.eval_mode:
        norm = {"batch": "batch norm with running statistics (eval mode)", "syncbatch": "batch norm with running statistics (eval mode)",
                "instance": "instance norm (each image's statistics)", "none": "none"}[options.norm]
        noise = "dropout off"
    else:
        norm = {"batch": "batch statistics of each image (the reference's test-time behaviour, translate's default)",
                "syncbatch": "batch statistics of each image (the reference's test-time behaviour, translate's default)",
                "instance": "instance norm (each image's statistics)", "none": "none"}[options.norm]
        noise = (f"dropout p={specs[0][2]} at {len(specs)} layer(s): inputs {', '.join(names[1:])} are scaled keep-masks "
                 "(Bernoulli(1-p)/(1-p), shapes (N, C, H/stride, W/stride) in input_strides); translate draws them from "
                 "a torch.Generator seeded by (seed, image content); ones turn dropout off") if specs else "no dropout layers"
    channels = "RGB" if options.input_nc == 3 else "gray (ITU-R 601 luma of RGB)" if options.input_nc == 1 else f"{options.input_nc} channels"
    metadata = {
        "preprocessing": f"{channels} uint8 pixels p -> float32 (p / 255 - 0.5) / 0.5, layout (N, {options.input_nc}, H, W)",
        "netG": options.netG,
        "norm": options.norm,
        "normalization": norm,
        "dropout": noise,
        "eval_mode": str(model.eval_mode).lower(),
        "seed": str(model.seed),
    }
    return Graph(module=module, input_names=names, input_strides=strides, feeds=feeds, metadata=metadata)
