"""The pix2pix training loop, readable top to bottom.

:func:`train` checks its data, builds its networks and hands the rest to the shared machinery
(:mod:`p2ptools.training.session` sets up, :func:`p2ptools.training.epoch_loop.run_epochs` loops:
checkpoints, logs, lr policies, validation, samples, stop signals). What is pix2pix's own is
:func:`train_step`, which follows the reference's order: G forward; D update on the detached fake;
G update with D frozen. Exact resume comes from saving everything that decides the future and from
data whose order and jitter depend only on ``(seed, epoch, index)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2ptools.errors import ConfigError
from p2ptools.options import check_options
from p2ptools.training.data import AlignedPairs, Jitter, check_batch, check_pair_headers, check_pair_size, to_network_range
from p2ptools.training.epoch_loop import LoopHooks, LoopSettings, run_epochs
from p2ptools.training.runtime import Runtime
from p2ptools.training.schedules import lr_lambda  # noqa: F401  (public here)
from p2ptools.training.session import dataset_splits, hardware, make_loaders, open_session, processes, run_config, set_requires_grad, wrap
from p2ptools.training.validation import hwc, validation_l1
from p2ptools_pix2pix import __version__
from p2ptools_pix2pix.losses import Objective, discriminator_loss, generator_loss, parse_objective
from p2ptools_pix2pix.networks import define_D, define_G
from p2ptools_pix2pix.options import Pix2PixOptions

#: Test hook: the trainer waits (until a signal) after finishing this step, to be killed there.
STALL_ENV = "P2PTOOLS_PIX2PIX_STALL_AT_STEP"


@dataclass
class Nets:
    """The networks as trained (possibly DDP-wrapped / compiled) and as stored (plain modules)."""

    G: nn.Module  # generator as called in training
    G_raw: nn.Module
    D: nn.Module | None  # discriminator for the D update (DDP-wrapped under torchrun)
    D_raw: nn.Module | None
    D_for_G: nn.Module | None  # the plain D for the G loss: its parameters are frozen there


# ----------------------------------------------------------------------------------------------
# building blocks

def build_networks(options: Pix2PixOptions, objective: Objective) -> tuple[nn.Module, nn.Module | None]:
    """Generator and (if the objective has a GAN term) discriminator, initialised per --init-type."""
    init = {"init_type": options.init_type, "init_gain": options.init_gain}
    net_g = define_G(options.netG, options.input_nc, options.output_nc, options.ngf, options.norm, options.dropout, **init)
    d_channels = objective.discriminator_channels(options.input_nc, options.output_nc)
    net_d = define_D(options.netD, d_channels, options.ndf, options.norm, **init) if d_channels else None
    return net_g, net_d


def check_setup(options: Pix2PixOptions, runtime: Runtime) -> None:
    """Refuse combinations that would fail later with an obscure message (ConfigError); the ranges
    and the rules between options are :func:`p2ptools.options.check_options`'s."""
    check_options(options)
    if options.norm == "syncbatch" and runtime.distributed and runtime.device.type != "cuda":
        raise ConfigError("--norm syncbatch needs CUDA devices (DistributedDataParallel refuses SyncBatchNorm on the CPU); "
                          "use --norm batch")


def train_step(real_a: torch.Tensor, real_b: torch.Tensor, nets: Nets, optimizers: dict[str, torch.optim.Optimizer],
               scaler: torch.amp.GradScaler, objective: Objective, options: Pix2PixOptions,
               amp_dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch in [-1, 1]; returns the detached loss terms."""
    autocast = torch.autocast(real_a.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    with autocast:
        fake_b = nets.G(real_a)
    terms: dict[str, torch.Tensor] = {}
    # D update: the fake is detached, so no gradient reaches G here.
    if nets.D is not None:
        set_requires_grad(nets.D_raw, True)
        optimizers["D"].zero_grad(set_to_none=True)
        with autocast:
            loss_d, d_terms = discriminator_loss(nets.D, objective, real_a, real_b, fake_b, options.gan_mode, nets.D_raw)
        scaler.scale(loss_d).backward()
        scaler.step(optimizers["D"])
        terms.update(d_terms)
        set_requires_grad(nets.D_raw, False)  # D is fixed while G learns to fool it
    # G update.
    optimizers["G"].zero_grad(set_to_none=True)
    with autocast:
        loss_g, g_terms = generator_loss(nets.D_for_G, objective, real_a, real_b, fake_b, options.gan_mode, options.lambda_l1)
    scaler.scale(loss_g).backward()
    scaler.step(optimizers["G"])
    scaler.update()
    terms.update(g_terms)
    return terms


def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 batch -> float [-1, 1] on ``device`` (converted there), channels_last if asked."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    a = to_network_range(batch["A"].to(device, non_blocking=True)).contiguous(memory_format=fmt)
    b = to_network_range(batch["B"].to(device, non_blocking=True)).contiguous(memory_format=fmt)
    return a, b


def evaluate(net_g: nn.Module, loader, device: torch.device, channels_last: bool, amp_dtype: torch.dtype | None,
             keep: int) -> tuple[float, np.ndarray | None]:
    """Mean L1 (in [-1, 1] units) of G in eval mode over ``loader``, and a grid of the first ``keep``."""
    return validation_l1(net_g, loader, lambda batch: to_device(check_batch(batch), device, channels_last),
                         lambda batch, i: hwc(batch["A"][i]), device, amp_dtype, keep)


# ----------------------------------------------------------------------------------------------
# the run

def train(options: Pix2PixOptions, data: Path | None, run_dir: Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train pix2pix on the aligned dataset ``data`` into ``run_dir``; returns ``run_dir``.

    Runs in one process, or in each process started by ``torchrun`` (DDP). SIGINT/SIGTERM save a
    checkpoint at the next step boundary and raise KeyboardInterrupt; ``resume=True`` continues from
    the latest checkpoint exactly.
    """
    check_options(options)
    objective = parse_objective(options.loss)
    if data is None:
        raise ConfigError("pix2pix training needs a dataset (--data DIR)")
    with processes(options.device) as runtime:
        return _train(options, Path(data).resolve(), Path(run_dir), objective, runtime, resume, overwrite, progress)


def _train(options: Pix2PixOptions, data_root: Path, run_dir: Path, objective: Objective, runtime: Runtime,
           resume: bool, overwrite: bool, show_progress: bool) -> Path:
    check_setup(options, runtime)
    hw = hardware(options, runtime)

    # Data: fail early on a missing/empty dataset or a pair that does not fit the preprocessing.
    splits = dataset_splits(data_root, options, limit=options.max_dataset_size)  # the first pairs in file order, as the reference
    jitter = Jitter(options.preprocess, options.load_size, options.crop_size, options.flip, train=True,
                    resize_backend=options.resize_backend)
    val_jitter = Jitter(options.preprocess, options.load_size, options.crop_size, options.flip, train=False,
                        resize_backend=options.resize_backend)
    check_pair_size(splits.train[0], jitter)
    check_pair_headers(splits.train, jitter)  # every pair, before an --overwrite replaces the old run
    check_pair_headers(splits.val, val_jitter)
    pairs = {"direction": options.direction, "input_nc": options.input_nc, "output_nc": options.output_nc, "seed": options.seed}
    data = make_loaders(AlignedPairs(splits.train, jitter, **pairs), AlignedPairs(splits.val, val_jitter, **pairs), options,
                        runtime, splits.val_split, shuffle=not options.serial_batches)

    # Networks (the same initial weights on every rank: seeded, then DDP broadcasts rank 0's anyway).
    torch.manual_seed(options.seed)
    net_g, net_d = build_networks(options, objective)
    config = run_config("pix2pix", __version__, options, data_root, net_g, net_d)
    session = open_session(run_dir, config, {"G": net_g} | ({"D": net_d} if net_d is not None else {}), options, runtime, hw,
                           resume=resume, overwrite=overwrite)
    # D's G-loss pass uses the plain module (its weights are frozen there: nothing to synchronise).
    nets = Nets(wrap(net_g, session, compile=options.compile), net_g, wrap(net_d, session, compile=options.compile), net_d,
                wrap(net_d, session, compile=options.compile, ddp=False))

    def step(batch: dict) -> tuple[dict[str, torch.Tensor], int]:
        real_a, real_b = to_device(check_batch(batch), hw.device, hw.channels_last)
        return train_step(real_a, real_b, nets, session.optimizers, session.scaler, objective, options, hw.amp_dtype), real_a.shape[0]

    def validate() -> tuple[float, np.ndarray | None]:
        return evaluate(net_g, data.val, hw.device, hw.channels_last, hw.amp_dtype, options.sample_images)

    settings = LoopSettings.from_options(options, title="train pix2pix", progress=show_progress,
                                         stall_at=int(os.environ.get(STALL_ENV, "0")))
    run_epochs(session, data, settings, LoopHooks(step, validate))
    return run_dir
