"""A loaded pix2pixHD run: the generator plus what ``translate`` needs.

Inputs: with ``--label-nc 0`` the images themselves (RGB or gray uint8); with label maps, the
model takes the ``label_ids`` (and with instances the ``instance_ids``) maps of each image as
extras (:attr:`Pix2PixHDModel.input_extras`; ``p2ptools translate`` reads them from
``<dataset>/<kind>/<split>/<name>.png`` beside the pairs). The generator runs in eval mode (it has
no dropout; instance norm uses each image's statistics anyway). Loading and batching are the shared
:mod:`p2ptools.generator_model`'s: the weights of ``--epoch`` (latest, best or N), runs of one size.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.generator_model import GeneratorModel, load_generator
from p2ptools.plugin import Graph, LoadOptions
from p2ptools_pix2pixhd.build import PLUGIN_NAME, architecture_flags, build_generator, size_multiple
from p2ptools_pix2pixhd.data import INSTANCE_DIR, LABEL_DIR, encode_input, input_channels
from p2ptools_pix2pixhd.options import Pix2PixHDOptions


class Pix2PixHDModel(GeneratorModel):
    """A pix2pixHD generator ready to translate.

    Args:
        net_g: the generator (weights loaded).
        options: the run's options.
        device: where to run.
        max_batch: images per forward pass at most.
    """

    def __init__(self, net_g: nn.Module, options: Pix2PixHDOptions, device: torch.device, max_batch: int = 4) -> None:
        self.net_g = net_g.to(device).eval()
        self.options = options
        self.device = device
        self.max_batch = max(1, max_batch)
        self.direction = options.direction
        self.in_channels = options.input_nc if not options.label_nc else 3
        self.out_channels = options.output_nc
        self.size_multiple = size_multiple(options)
        self.input_extras = tuple(([LABEL_DIR] if options.label_nc else []) + ([INSTANCE_DIR] if options.instance else []))

    def _pack(self, image: np.ndarray, extras: Mapping[str, np.ndarray]) -> np.ndarray:
        """One input -> packed (C, H, W) integers, as the training data packs it."""
        h, w = image.shape[:2]
        unit = self.size_multiple
        if h % unit or w % unit:
            padded = f"{-(-h // unit) * unit}x{-(-w // unit) * unit}"  # the next multiples: no content lost
            raise InputFileError("<input image>", f"size {h}x{w} (HxW): pix2pixHD ({self.options.netG}) needs heights and "
                                                  f"widths that are multiples of {unit}; pad the inputs to {padded}, or resize them")
        channels = []
        if not self.options.label_nc:
            if image.dtype != np.uint8:
                raise InputFileError("<input image>", f"expected a uint8 image, got {image.dtype}")
            gray = image.ndim == 2
            if (1 if gray else image.shape[2]) != self.options.input_nc:
                raise InputFileError("<input image>", f"image has {1 if gray else image.shape[2]} channel(s) but the model takes "
                                                      f"{self.options.input_nc}")
            channels.append(image[:, :, None] if gray else image)
        for kind in self.input_extras:
            if kind not in extras:
                raise InputFileError("<input image>", f"the model needs its {kind} map (a {kind}/<split>/<name>.png beside the pairs)")
            m = np.asarray(extras[kind])
            if m.ndim != 2 or m.shape != (h, w):
                raise InputFileError("<input image>", f"{kind} map of shape {m.shape} does not fit the {h}x{w} image")
            if kind == LABEL_DIR and int(m.max()) >= self.options.label_nc:
                raise InputFileError("<input image>", f"label id {int(m.max())} does not fit --label-nc {self.options.label_nc}")
            channels.append(m.astype(np.int32)[:, :, None])
        packed = np.concatenate([c.astype(np.int32) for c in channels], axis=2) if len(channels) > 1 or self.input_extras else channels[0]
        return np.ascontiguousarray(packed.transpose(2, 0, 1))

    def encode(self, images: Sequence[np.ndarray], extras: Sequence[Mapping[str, np.ndarray]] | None = None) -> torch.Tensor:
        """Images (and their maps) -> the generator's float input batch (N, C, H, W), on the CPU."""
        extras = list(extras) if extras else [{} for _ in images]
        if len(extras) != len(images):
            raise ConfigError(f"{len(images)} images but {len(extras)} extras")
        packed = torch.from_numpy(np.stack([self._pack(im, ex) for im, ex in zip(images, extras, strict=True)]))
        return encode_input(packed, self.options.label_nc, self.options.instance)

    def graph(self) -> Graph:
        """The generator for export: eval mode (as translate runs it); the input is the encoded
        batch (:meth:`encode`), described in the metadata."""
        opts = self.options
        if opts.label_nc:
            pre = (f"one-hot label ids (label_ids map, ids 0..{opts.label_nc - 1}) over {opts.label_nc} channels"
                   + (", then the instance boundary map (1 where an instance id differs from a 4-neighbour's, else 0)" if opts.instance else ""))
        else:
            pre = f"uint8 pixels p -> float32 (p / 255 - 0.5) / 0.5 ({opts.input_nc} channels)" + (
                ", then the instance boundary map" if opts.instance else "")
        channels = input_channels(opts.label_nc, opts.input_nc, opts.instance)
        metadata = {"preprocessing": f"{pre}; layout (N, {channels}, H, W) float32", "netG": opts.netG, "norm": opts.norm,
                    "normalization": "instance norm (each image's statistics)" if opts.norm == "instance"
                    else "batch norm with running statistics (eval mode)",
                    "dropout": "no dropout layers", "eval_mode": "true"}
        return Graph(module=copy.deepcopy(self.net_g).cpu().float().eval(), input_names=("input",), input_strides=((channels, 1),),
                     feeds=lambda images, extras=(): {"input": self.encode(images, extras).numpy()}, metadata=metadata)

    def translate(self, images: Sequence[np.ndarray], extras: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[np.ndarray]:
        """Translate images (with their label/instance maps in ``extras`` when the model takes them).

        Returns uint8 (H, W, 3) images, or (H, W) when ``out_channels`` is 1.
        """
        extras = list(extras) if extras is not None else [{} for _ in images]
        if len(extras) != len(images):
            raise ConfigError(f"{len(images)} images but {len(extras)} extras")
        return self.translate_prepared([self._pack(im, ex) for im, ex in zip(images, extras, strict=True)])

    def generate(self, packed: Sequence[np.ndarray]) -> torch.Tensor:
        """The generator on packed inputs of one size (:meth:`_pack`)."""
        batch = torch.from_numpy(np.stack(packed)).to(self.device)
        return self.net_g(encode_input(batch, self.options.label_nc, self.options.instance))


def load_run(run_dir: Path, options: LoadOptions) -> Pix2PixHDModel:
    """Load ``RUN_DIR`` (``config.json`` + the generator of ``options.epoch``: ``checkpoints/latest_G``
    or ``checkpoints/epoch_<N>_G.safetensors``) for translation."""
    run = load_generator(run_dir, options, plugin=PLUGIN_NAME, options_type=Pix2PixHDOptions, build=build_generator,
                         flags=architecture_flags)
    model = Pix2PixHDModel(run.net, run.options, run.device)
    model.epoch, model.weights = run.epoch, run.weights.name
    return model
