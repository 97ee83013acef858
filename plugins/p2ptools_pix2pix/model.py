"""A loaded pix2pix run: the generator plus everything ``translate`` needs.

Test-time behaviour (GUIDE.md section 3): by default the generator runs as the reference runs it at
test time, in training mode: dropout active and batch norm using the statistics of each image (the
paper's noise). Here that noise is made reproducible and independent of batching: every image gets
its own dropout masks from a generator seeded by ``(seed, the image's content)``, and batch norm
normalises each image by its own statistics (exactly what the reference computes with its test
batch size of 1), so an image's output does not depend on the batch size, its batch mates, the
order of the inputs or the device. ``LoadOptions(eval_mode=True)`` uses ``G.eval()`` instead
(running statistics, no dropout).

Pixel mapping as the reference: ``x / 255`` normalised with mean 0.5, std 0.5 to [-1, 1]; outputs
``(y + 1) / 2 * 255``, rounded to the nearest integer (the reference truncates).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from p2ptools.devices import resolve_device
from p2ptools.errors import InputFileError
from p2ptools.generator_model import GeneratorModel, load_generator
from p2ptools.plugin import Graph, LoadOptions
from p2ptools_pix2pix.networks import define_G, generator_depth
from p2ptools_pix2pix.options import Pix2PixOptions

PLUGIN_NAME = "pix2pix"


# --- the architecture -------------------------------------------------------------------------


def architecture_flags(options: Pix2PixOptions) -> str:
    """The options that decide the generator's weights, as command-line flags."""
    drop = "--dropout" if options.dropout else "--no-dropout"
    return (
        f"--netG {options.netG} --ngf {options.ngf} --norm {options.norm} {drop} "
        f"--input-nc {options.input_nc} --output-nc {options.output_nc}"
    )


def build_generator(options: Pix2PixOptions) -> nn.Module:
    """The generator the options describe (initialised as the reference does)."""
    return define_G(options.netG, options.input_nc, options.output_nc, options.ngf, options.norm, options.dropout)


# --- reproducible reference-style test-time noise -----------------------------------------------


def image_seed(seed: int, image: np.ndarray) -> int:
    """A 63-bit seed from ``seed`` and an image's shape and pixels."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{seed}|{image.shape}|{image.dtype}|".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def _per_image_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    # batch norm over one image = instance norm with the batch norm's affine parameters;
    # running statistics are left untouched
    return F.instance_norm(x, None, None, bn.weight, bn.bias, use_input_stats=True, eps=bn.eps)


def _per_image_dropout(generators: list[torch.Generator], drop: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    keep = 1.0 - drop.p
    if drop.p == 0.0:
        return x
    if keep == 0.0:
        return torch.zeros_like(x)
    masks = [torch.empty(x.shape[1:], dtype=torch.float32).bernoulli_(keep, generator=g) for g in generators]
    mask = torch.stack(masks).to(device=x.device, dtype=x.dtype).div_(keep)
    return x * mask


@contextlib.contextmanager
def per_image_noise(net: nn.Module, seeds: Sequence[int]) -> Iterator[None]:
    """Inside: ``net`` (in training mode) normalises each image of a batch by its own statistics
    and draws its dropout masks from a CPU generator seeded by ``seeds[i]`` (one per image, in
    batch order). Parameters and buffers are not changed."""
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    patched = []
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = lambda x, m=m: _per_image_batch_norm(m, x)  # type: ignore[method-assign]
        elif isinstance(m, nn.Dropout):
            m.forward = lambda x, m=m: _per_image_dropout(generators, m, x)  # type: ignore[method-assign]
        else:
            continue
        patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


# --- the loaded model ---------------------------------------------------------------------------


class Pix2PixModel(GeneratorModel):
    """A pix2pix generator ready to translate uint8 images.

    Args:
        netG: the generator (weights loaded).
        options: the run's options (architecture, direction, channels).
        device: where to run.
        eval_mode: True: ``G.eval()``; False: the reference's test-time noise, seeded (module docstring).
        seed: seed of the test-time noise.
        max_batch: images per forward pass at most.
    """

    def __init__(
        self,
        netG: nn.Module,
        options: Pix2PixOptions,
        device: torch.device,
        *,
        eval_mode: bool = False,
        seed: int = 0,
        max_batch: int = 16,
    ) -> None:
        self.netG = netG.to(device)
        self.options = options
        self.device = device
        self.eval_mode = eval_mode
        self.seed = seed
        self.max_batch = max(1, max_batch)
        self.direction = options.direction
        self.in_channels = options.input_nc
        self.out_channels = options.output_nc
        self.depth = generator_depth(netG)
        self.size_multiple = 2**self.depth if self.depth else 1
        self.netG.train(not eval_mode)

    def check_image(self, image: np.ndarray) -> None:
        """Raise :class:`InputFileError` for an array the generator cannot take (dtype, channels, size)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise InputFileError("<input image>", f"expected a uint8 numpy array, got {type(image).__name__} {getattr(image, 'dtype', '')}")
        channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else None
        if channels is None or channels not in (1, 3):
            raise InputFileError("<input image>", f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
        if channels != self.in_channels:
            raise InputFileError("<input image>", f"image has {channels} channel(s) but the model takes {self.in_channels} (--input-nc)")
        h, w = image.shape[:2]
        if self.depth:
            unit = 2**self.depth
            if h % unit or w % unit:
                padded = f"{-(-h // unit) * unit}x{-(-w // unit) * unit}"  # the next multiples: no content lost
                raise InputFileError(
                    "<input image>",
                    f"size {h}x{w} (HxW) does not fit {self.options.netG}: height and width must be multiples of "
                    f"{unit} ({self.depth} down-samplings); pad the inputs to {padded}, or resize or crop them",
                )

    def graph(self) -> Graph:
        """The generator for export, with this model's test-time semantics (:mod:`p2ptools_pix2pix.graph`)."""
        from p2ptools_pix2pix.graph import build_graph

        return build_graph(self)

    def translate(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Translate uint8 images, (H, W, 3) RGB or (H, W) gray per ``in_channels``.

        Returns uint8 images of the same height and width: (H, W, 3), or (H, W) when
        ``out_channels`` is 1. Images of equal size are run together, ``max_batch`` at a time.
        """
        for image in images:
            self.check_image(image)
        return self.translate_prepared(images)

    def generate(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """The generator on images of one size, with this model's test-time semantics."""
        batch = np.stack([im.reshape(im.shape[0], im.shape[1], -1) for im in images])  # (N, H, W, C)
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).contiguous().float().div_(255.0).sub_(0.5).div_(0.5)
        if self.eval_mode:
            return self.netG(x)
        with per_image_noise(self.netG, [image_seed(self.seed, im) for im in images]):
            return self.netG(x)


# --- loading a run ------------------------------------------------------------------------------


def load_pix2pix_run(run_dir: Path, options: LoadOptions) -> Pix2PixModel:
    """Load ``RUN_DIR`` (``config.json`` + the generator of ``options.epoch``: ``checkpoints/latest_G``
    or ``checkpoints/epoch_<N>_G.safetensors``) for translation."""
    run = load_generator(run_dir, options, plugin=PLUGIN_NAME, options_type=Pix2PixOptions, build=build_generator,
                         flags=architecture_flags)
    model = Pix2PixModel(run.net, run.options, run.device, eval_mode=options.eval_mode, seed=options.seed)
    model.epoch, model.weights = run.epoch, run.weights.name
    return model


__all__ = [
    "Pix2PixModel",
    "architecture_flags",
    "build_generator",
    "image_seed",
    "load_pix2pix_run",
    "per_image_noise",
    "resolve_device",
]
