"""The pix2pixHD training loop, readable top to bottom.

:func:`train` sets up (processes, data, networks, optimisers, resume) through the shared machinery
in :mod:`p2ptools.training` and runs epochs of :func:`train_step`. A step computes both losses
with the same discriminator weights, as the official code does: D on the detached fake and the
real (one batch), then the generator's losses with D frozen (GAN, feature matching against the real
features, VGG); then G is updated, then D. ``--niter-fix-global`` trains only the outermost local
enhancer for its first epochs (the global part's gradients are dropped before the step) and then
starts the generator's Adam afresh over all parameters, as the official code does.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2ptools.errors import ConfigError, InputFileError
from p2ptools.options import check_options
from p2ptools.progress import console
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.data import Jitter, check_batch, check_pair_headers, image_size, to_network_range
from p2ptools.training.epoch_loop import LoopHooks, LoopSettings, run_epochs
from p2ptools.training.paths import HASHES_KEY, absolute_paths, file_hashes
from p2ptools.training.runtime import Runtime
from p2ptools.training.session import dataset_splits, hardware, make_loaders, open_session, processes, run_config, set_requires_grad, wrap
from p2ptools.training.state import Position
from p2ptools.training.validation import validation_l1
from p2ptools_pix2pixhd import __version__
from p2ptools_pix2pixhd.build import PLUGIN_NAME, build_discriminator, build_generator, size_multiple  # noqa: F401  (public here too)
from p2ptools_pix2pixhd.data import INSTANCE_DIR, LABEL_DIR, HDJitter, HDPairs, encode_input, extra_path, input_preview, read_pair_map
from p2ptools_pix2pixhd.losses import VGG19Features, discriminator_loss, feature_matching_loss, gan_loss, load_vgg19, vgg_loss
from p2ptools_pix2pixhd.options import Pix2PixHDOptions

#: Test hook: the trainer waits (until a signal) after finishing this step, to be killed there.
STALL_ENV = "P2PTOOLS_PIX2PIXHD_STALL_AT_STEP"


@dataclass
class Nets:
    """The networks as trained (possibly DDP-wrapped / compiled) and as stored (plain modules)."""

    G: nn.Module
    G_raw: nn.Module
    D: nn.Module  # for the D loss (DDP-wrapped under torchrun)
    D_raw: nn.Module
    D_for_G: nn.Module  # the plain D for the G loss: its parameters are frozen there
    vgg: VGG19Features | None


# ----------------------------------------------------------------------------------------------
# building blocks

def fixed_global_parameters(net_g: nn.Module, options: Pix2PixHDOptions) -> list[nn.Parameter]:
    """Parameters left untrained during ``--niter-fix-global`` (all but the outermost enhancer's)."""
    if options.netG != "local" or not options.niter_fix_global:
        return []
    trained = f"model{options.n_local_enhancers}_"
    return [p for name, p in net_g.named_parameters() if not name.startswith(trained)]


def init_generator_from(net_g: nn.Module, run_dir: Path) -> int:
    """Copy every tensor of ``RUN_DIR``'s generator whose name and shape match ``net_g``'s; returns
    how many. None matching is a ConfigError (the runs' architectures have nothing in common)."""
    source = Path(run_dir) / ckpt.CHECKPOINTS / ckpt.G_FILE
    weights = ckpt.read_weights(source)
    own = net_g.state_dict()
    matching = {k: v for k, v in weights.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matching:
        raise ConfigError(f"--init-from {run_dir}: no tensor of {source} fits this generator (names or shapes differ everywhere)")
    net_g.load_state_dict(matching, strict=False)
    return len(matching)


def check_setup(options: Pix2PixHDOptions) -> None:
    """Refuse combinations that would fail later with an obscure message (ConfigError); the ranges
    are :func:`p2ptools.options.check_options`'s."""
    check_options(options)
    if options.preprocess == "scale_width_and_crop" and options.crop_size > options.load_size:
        raise ConfigError(f"--crop-size {options.crop_size} is larger than --load-size {options.load_size}: crops are taken "
                          f"from images scaled to --load-size wide (use --load-size {options.crop_size} or more)")
    if options.niter_fix_global and options.netG != "local":
        raise ConfigError("--niter-fix-global needs --netG local (it trains the local enhancer alone first)")
    if options.vgg_loss and options.vgg_weights is None:
        raise ConfigError("the VGG loss needs torchvision's VGG19 weights file: pass --vgg-weights FILE "
                          "(vgg19-dcbb9e9d.pth; nothing is downloaded) or train with --no-vgg-loss")
    unit = size_multiple(options)
    if options.preprocess in ("crop", "scale_width_and_crop") and options.crop_size % unit:
        raise ConfigError(f"--crop-size {options.crop_size}: the generator needs sizes divisible by {unit}")


def check_files(files: list[Path], options: Pix2PixHDOptions) -> None:
    """Every pair's header and every label and instance map (decoded: type, size, label ids below
    --label-nc) before anything is written, so that bad data never replaces a run with --overwrite
    halfway through an epoch. The first bad file raises, in the files' order."""
    check_pair_headers(files, Jitter("none"))
    kinds = ([LABEL_DIR] if options.label_nc else []) + ([INSTANCE_DIR] if options.instance else [])
    for path in files:
        for kind in kinds:
            extra = extra_path(path, kind)
            if not extra.is_file():
                if kind == LABEL_DIR:
                    hint = (f"--label-nc {options.label_nc} one-hot encodes a label map per pair: write "
                            f"<data>/{LABEL_DIR}/<split>/<name>.png, one 8- or 16-bit class id per pixel (0..{options.label_nc - 1}), "
                            "as `p2ptools make-dataset cityscapes --ids-extras` does; or train on the RGB A halves with "
                            "--label-nc 0" + (" --no-instance" if options.instance else ""))
                else:
                    hint = (f"--instance reads <data>/{INSTANCE_DIR}/<split>/<name>.png, 16-bit instance ids, as "
                            "`p2ptools make-dataset cityscapes --ids-extras` writes; or train with --no-instance")
                raise InputFileError(extra, f"missing {kind} map of pair {path.name} ({hint})")
    if not kinds:
        return

    def check(path: Path) -> None:
        w, h = image_size(path.read_bytes(), str(path))  # read and checked by check_pair_headers just before
        for kind in kinds:
            read_pair_map(path, kind, (h, w // 2), options.label_nc if kind == LABEL_DIR else None)

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:  # OpenCV decodes without the GIL
        for _ in pool.map(check, files):  # map re-raises the first failure in the files' order
            pass


def to_device(batch: dict[str, torch.Tensor], device: torch.device, options: Pix2PixHDOptions,
              channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A packed batch -> (generator input, target in [-1, 1]) on ``device``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = encode_input(batch["A"].to(device, non_blocking=True), options.label_nc, options.instance).contiguous(memory_format=fmt)
    real = to_network_range(batch["B"].to(device, non_blocking=True)).contiguous(memory_format=fmt)
    return x, real


def train_step(x: torch.Tensor, real: torch.Tensor, nets: Nets, optimizers: dict[str, torch.optim.Optimizer],
               scaler: torch.amp.GradScaler, options: Pix2PixHDOptions, amp_dtype: torch.dtype | None,
               fixed: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    """One optimisation step; returns the detached loss terms."""
    autocast = torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    n = x.shape[0]
    with autocast:
        fake = nets.G(x)
        # D on the detached fake and on the real in one batch (equal to two passes with instance norm)
        pred = nets.D(torch.cat([torch.cat([x, fake.detach()], 1), torch.cat([x, real], 1)], 0))
    pred_fake_pool = [[f[:n] for f in scale] for scale in pred]
    pred_real = [[f[n:] for f in scale] for scale in pred]
    loss_d, terms = discriminator_loss(pred_fake_pool, pred_real, options.gan_mode)
    optimizers["D"].zero_grad(set_to_none=True)
    scaler.scale(loss_d).backward()  # D's gradients now; its step comes after G's, as in the official order

    # G's losses with D frozen (the same D weights as above).
    set_requires_grad(nets.D_raw, False)
    with autocast:
        pred_fake = nets.D_for_G(torch.cat([x, fake], 1))
        loss_g = g_gan = gan_loss(pred_fake, True, options.gan_mode)
        terms["G_GAN"] = g_gan.detach()
        if options.ganfeat_loss:
            g_feat = feature_matching_loss(pred_fake, pred_real, options.lambda_feat)
            loss_g = loss_g + g_feat
            terms["G_GAN_Feat"] = g_feat.detach()
        if nets.vgg is not None:
            g_vgg = vgg_loss(nets.vgg, fake, real, options.lambda_feat)
            loss_g = loss_g + g_vgg
            terms["G_VGG"] = g_vgg.detach()
    set_requires_grad(nets.D_raw, True)
    optimizers["G"].zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    for p in fixed:  # --niter-fix-global: the global part keeps its weights (Adam skips grad-less parameters)
        p.grad = None
    scaler.step(optimizers["G"])
    scaler.step(optimizers["D"])
    scaler.update()
    return terms


def evaluate(net_g: nn.Module, loader, device: torch.device, options: Pix2PixHDOptions, amp_dtype: torch.dtype | None,
             keep: int) -> tuple[float, np.ndarray | None]:
    """Mean L1 (in [-1, 1] units) of G in eval mode over ``loader``, and a grid of the first ``keep``."""
    return validation_l1(net_g, loader, lambda batch: to_device(check_batch(batch), device, options, False),
                         lambda batch, i: input_preview(batch["A"][i], options.label_nc, options.instance), device, amp_dtype, keep)


# ----------------------------------------------------------------------------------------------
# the run

def train(options: Pix2PixHDOptions, data: Path | None, run_dir: Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train pix2pixHD on ``data`` into ``run_dir``; returns ``run_dir``.

    Runs in one process, or in each process started by ``torchrun`` (DDP). SIGINT/SIGTERM save a
    checkpoint at the next step boundary and raise KeyboardInterrupt; ``resume=True`` continues from
    the latest checkpoint exactly.
    """
    options = absolute_paths(options)  # config.json stores them absolute: the run resumes from any folder
    check_setup(options)
    if data is None:
        raise ConfigError("pix2pixhd training needs a dataset (--data DIR)")
    with processes(options.device) as runtime:
        return _train(options, Path(data).resolve(), Path(run_dir), runtime, resume, overwrite, progress)


def _train(options: Pix2PixHDOptions, data_root: Path, run_dir: Path, runtime: Runtime, resume: bool, overwrite: bool,
           show_progress: bool) -> Path:
    hw = hardware(options, runtime)

    # Data: every pair and its maps checked before an --overwrite replaces anything.
    splits = dataset_splits(data_root, options)
    check_files(splits.train, options)
    check_files(splits.val, options)
    jitter = HDJitter(options.preprocess, options.load_size, options.crop_size, options.flip, train=True)
    val_jitter = HDJitter(options.preprocess, options.load_size, options.crop_size, options.flip, train=False)
    common = {"label_nc": options.label_nc, "instance": options.instance, "direction": options.direction,
              "input_nc": options.input_nc, "output_nc": options.output_nc, "seed": options.seed}
    train_set = HDPairs(splits.train, jitter, **common)
    first = check_batch(train_set[0])
    unit = size_multiple(options)
    if first["B"].shape[1] % unit or first["B"].shape[2] % unit:
        raise InputFileError(splits.train[0], f"size {first['B'].shape[2]}x{first['B'].shape[1]} after --preprocess "
                                              f"{options.preprocess}: the generator needs multiples of {unit}")
    data = make_loaders(train_set, HDPairs(splits.val, val_jitter, **common), options, runtime, splits.val_split)

    # Networks: the same initial weights on every rank (seeded; DDP broadcasts rank 0's anyway).
    torch.manual_seed(options.seed)
    net_g, net_d = build_generator(options), build_discriminator(options)
    if options.init_from is not None and not resume:  # a resumed run takes G from its checkpoint
        copied = init_generator_from(net_g, options.init_from)
        if runtime.is_main:
            console.print(f"--init-from: {copied} of {len(net_g.state_dict())} generator tensors from {options.init_from}")
    vgg = load_vgg19(options.vgg_weights).to(hw.device) if options.vgg_loss else None
    config = run_config(PLUGIN_NAME, __version__, options, data_root, net_g, net_d, {HASHES_KEY: file_hashes(options)})
    session = open_session(run_dir, config, {"G": net_g, "D": net_d}, options, runtime, hw, resume=resume, overwrite=overwrite)
    fixed = fixed_global_parameters(net_g, options)
    nets = Nets(wrap(net_g, session, compile=options.compile), net_g, wrap(net_d, session, compile=options.compile), net_d,
                wrap(net_d, session, compile=options.compile, ddp=False), vgg)
    optimizers = session.optimizers

    def step(batch: dict) -> tuple[dict[str, torch.Tensor], int]:
        x, real = to_device(check_batch(batch), hw.device, options, hw.channels_last)
        fixed_now = fixed if session.position.epoch < options.niter_fix_global else []
        return train_step(x, real, nets, optimizers, session.scaler, options, hw.amp_dtype, fixed_now), x.shape[0]

    def epoch_start(pos: Position) -> None:
        if fixed and pos.epoch == options.niter_fix_global and pos.batches_done == 0:
            optimizers["G"].state.clear()  # the official code starts a new Adam over all of G here
            if runtime.is_main:
                console.print(f"epoch {pos.epoch + 1}: the global generator now trains too")

    def validate() -> tuple[float, np.ndarray | None]:
        return evaluate(net_g, data.val, hw.device, options, hw.amp_dtype, options.sample_images)

    settings = LoopSettings.from_options(options, title="train pix2pixhd", progress=show_progress,
                                         stall_at=int(os.environ.get(STALL_ENV, "0")))
    run_epochs(session, data, settings, LoopHooks(step, validate, epoch_start))
    return run_dir
