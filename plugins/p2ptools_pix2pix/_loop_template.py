"""A complete small GAN plugin on the shared training loop, to copy: what a new model writes.

A plugin is its **networks**, its **losses**, its **step** and its **options**; everything else
(processes and DDP, precision, data loading with exact resume, the run directory, optimisers, lr
policies, background checkpoints, logs and trackers, validation and sample grids, per-epoch weights,
stop signals, loading a run for ``translate --epoch``) comes from :mod:`p2ptools.training` and
:mod:`p2ptools.generator_model`. Here: a per-pixel generator (1x1 convolutions), a 2-layer PatchGAN
on ``cat(A, B)``, LSGAN plus ``lambda_l1`` times L1. Not registered (not listed to users);
``tests/core/test_loop_template.py`` trains, resumes and translates it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2ptools.errors import InputFileError
from p2ptools.generator_model import GeneratorModel, load_generator
from p2ptools.options import WEIGHT, WIDTH, check_options
from p2ptools.plugin import LoadOptions, ModelPlugin, TrainRequest
from p2ptools.training.data import AlignedPairs, Jitter, check_batch, check_pair_headers, to_network_range
from p2ptools.training.epoch_loop import LoopHooks, LoopSettings, run_epochs
from p2ptools.training.options import TrainOptions, with_default
from p2ptools.training.session import dataset_splits, hardware, make_loaders, open_session, processes, run_config, set_requires_grad, wrap
from p2ptools.training.validation import hwc, validation_l1

NAME = "pixelgan-template"


# --- options: only the model's own; TrainOptions has epochs, lr, batch size, device, logging, ... ---

@dataclass(frozen=True)
class PixelGANOptions(TrainOptions):
    """Options of :class:`PixelGANPlugin` (a redeclared field changes only its default)."""

    hidden: int = field(default=32, metadata={"range": WIDTH, "help": "Hidden channels of the per-pixel generator."})
    ndf: int = field(default=16, metadata={"range": WIDTH, "help": "Discriminator filters."})
    lambda_l1: float = field(default=10.0, metadata={"range": WEIGHT, "help": "Weight of the L1 term.", "flag": "--lambda-l1"})
    direction: str = field(default="AtoB", metadata={"help": "Which half is the input.", "choices": ("AtoB", "BtoA")})
    epochs: int = with_default("epochs", 5)  # a shorter run than TrainOptions' 100 + 100
    epochs_decay: int = with_default("epochs_decay", 5)


# --- networks --------------------------------------------------------------------------------

def build_generator(options: PixelGANOptions) -> nn.Module:
    """A per-pixel MLP: RGB in, RGB out in [-1, 1]."""
    return nn.Sequential(nn.Conv2d(3, options.hidden, 1), nn.ReLU(), nn.Conv2d(options.hidden, 3, 1), nn.Tanh())


def build_discriminator(options: PixelGANOptions) -> nn.Module:
    """A 2-layer PatchGAN on ``cat(A, B)`` (6 channels)."""
    return nn.Sequential(nn.Conv2d(6, options.ndf, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(options.ndf, 1, 4, 1, 1))


# --- losses and the step ---------------------------------------------------------------------

def lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    return ((prediction - (1.0 if real else 0.0)) ** 2).mean()


def train_step(a: torch.Tensor, b: torch.Tensor, G: nn.Module, D: nn.Module, D_plain: nn.Module,
               optimizers: dict[str, torch.optim.Optimizer], options: PixelGANOptions) -> dict[str, torch.Tensor]:
    """D on the detached fake and the real, then G with D frozen; returns the detached loss terms."""
    fake = G(a)
    set_requires_grad(D_plain, True)
    optimizers["D"].zero_grad(set_to_none=True)
    loss_d = 0.5 * (lsgan(D(torch.cat([a, fake.detach()], 1)), False) + lsgan(D(torch.cat([a, b], 1)), True))
    loss_d.backward()
    optimizers["D"].step()
    set_requires_grad(D_plain, False)
    optimizers["G"].zero_grad(set_to_none=True)
    g_gan = lsgan(D_plain(torch.cat([a, fake], 1)), True)
    g_l1 = (fake - b).abs().mean() * options.lambda_l1
    (g_gan + g_l1).backward()
    optimizers["G"].step()
    return {"G_GAN": g_gan.detach(), "G_L1_weighted": g_l1.detach(), "D": loss_d.detach()}


# --- training: the shared set-up and loop, in their order --------------------------------------

def train(options: PixelGANOptions, request: TrainRequest) -> Path:
    """Train (or resume) into ``request.run_dir``; see :mod:`p2ptools.training.session`."""
    check_options(options)
    run_dir = Path(request.run_dir)
    with processes(options.device) as runtime:
        hw = hardware(options, runtime)
        splits = dataset_splits(Path(request.data).resolve(), options)
        jitter = Jitter("none")
        check_pair_headers(splits.train + splits.val, jitter)
        pairs = {"direction": options.direction, "seed": options.seed}
        data = make_loaders(AlignedPairs(splits.train, jitter, **pairs), AlignedPairs(splits.val, jitter, **pairs), options,
                            runtime, splits.val_split)
        torch.manual_seed(options.seed)
        net_g, net_d = build_generator(options), build_discriminator(options)
        config = run_config(NAME, PixelGANPlugin.version, options, Path(request.data).resolve(), net_g, net_d)
        session = open_session(run_dir, config, {"G": net_g, "D": net_d}, options, runtime, hw, resume=request.resume,
                               overwrite=request.overwrite)
        G, D = wrap(net_g, session, compile=options.compile), wrap(net_d, session, compile=options.compile)

        def to_device(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
            batch = check_batch(batch)
            return to_network_range(batch["A"].to(hw.device)), to_network_range(batch["B"].to(hw.device))

        def step(batch: dict) -> tuple[dict[str, torch.Tensor], int]:
            a, b = to_device(batch)
            return train_step(a, b, G, D, net_d, session.optimizers, options), a.shape[0]

        def validate() -> tuple[float, np.ndarray | None]:
            return validation_l1(net_g, data.val, to_device, lambda batch, i: hwc(batch["A"][i]), hw.device, hw.amp_dtype,
                                 options.sample_images)

        settings = LoopSettings.from_options(options, title=f"train {NAME}", progress=request.progress,
                                             stall_at=int(os.environ.get("P2PTOOLS_TEMPLATE_STALL_AT_STEP", "0")))
        run_epochs(session, data, settings, LoopHooks(step, validate))
    return run_dir


# --- the loaded model: inputs checked and packed, the generator called ------------------------------

class PixelGANModel(GeneratorModel):
    """The trained generator; batching and uint8 output come from :class:`GeneratorModel`."""

    def __init__(self, net: nn.Module, options: PixelGANOptions, device: torch.device) -> None:
        self.net, self.options, self.device = net.to(device).eval(), options, device
        self.direction, self.in_channels, self.out_channels, self.max_batch = options.direction, 3, 3, 8

    def translate(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise InputFileError("<input image>", f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        return self.translate_prepared(list(images))

    def generate(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return self.net(x)


class PixelGANPlugin(ModelPlugin):
    """Template GAN plugin on the shared loop: per-pixel generator, 2-layer PatchGAN, LSGAN + L1."""

    name = NAME
    version = "1"
    summary = "Template: per-pixel GAN on the shared training loop."
    Options = PixelGANOptions

    def train(self, options: PixelGANOptions, request: TrainRequest) -> Path:
        return train(options, request)

    def load(self, run_dir: Path, options: LoadOptions) -> PixelGANModel:
        run = load_generator(run_dir, options, plugin=NAME, options_type=PixelGANOptions, build=build_generator,
                             flags=lambda o: f"--hidden {o.hidden}")
        model = PixelGANModel(run.net, run.options, run.device)
        model.epoch, model.weights = run.epoch, run.weights.name
        return model

    def smoke_options(self) -> PixelGANOptions:
        return PixelGANOptions(hidden=8, ndf=4, epochs=1, epochs_decay=1, batch_size=2, workers=0, device="cpu", log_every=1)


__all__ = ["PixelGANModel", "PixelGANOptions", "PixelGANPlugin", "build_discriminator", "build_generator", "train_step"]
