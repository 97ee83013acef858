"""The pix2pix training loop, readable top to bottom.

:func:`train` sets up (processes, data, networks, optimisers, resume) and runs epochs of
:func:`train_step`, which follows the reference's order: G forward; D update on the detached fake;
G update with D frozen. At each epoch end: lr schedule step, validation L1, a sample grid, the
epoch's generator (``--save-epoch-freq``) and, when ``--checkpoint-minutes`` have passed, the full
state (copied off the device, written in a background thread). Exact resume comes from saving everything that decides the future (weights, optimiser
and scheduler state, RNG states, the position within the epoch) and from data whose order and
jitter depend only on ``(seed, epoch, index)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from p2ptools.errors import ConfigError
from p2ptools.options import check_options, to_dict
from p2ptools.pairs import MANIFEST_NAME, iter_split, manifest_sha256
from p2ptools.progress import StatsColumn, console, make_progress
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.data import AlignedPairs, Jitter, ResumableSampler, check_batch, check_dataset_folder, check_pair_headers, check_pair_size, make_loader, split_files, to_network_range, to_uint8
from p2ptools.training.epoch_weights import drop_epoch_weights_after
from p2ptools.training.loop import Meter, lr_lambda, set_requires_grad  # noqa: F401  (lr_lambda: public here)
from p2ptools.training.runtime import Runtime, any_rank, any_ranks, broadcast_float, cleanup_distributed, resolve_precision, setup_distributed, stop_on_signals
from p2ptools.training.samples import sample_grid, write_samples
from p2ptools.training.state import prepare_run
from p2ptools.training.saving import Checkpointer
from p2ptools.training.schedules import make_scheduler, needs_metric, step_scheduler
from p2ptools.training.tracking import RunLog, check_trackers, parse_trackers
from p2ptools_pix2pix import __version__
from p2ptools_pix2pix.losses import Objective, discriminator_loss, generator_loss, parse_objective
from p2ptools_pix2pix.networks import count_parameters, define_D, define_G
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
    check_trackers(parse_trackers(options.log))  # a missing tracker package fails before the run starts


def run_config(options: Pix2PixOptions, data_root: Path, net_g: nn.Module, net_d: nn.Module | None) -> dict[str, Any]:
    """What ``config.json`` holds (GUIDE: plugin, version, options, data, manifest hash, sizes)."""
    has_manifest = (data_root / MANIFEST_NAME).is_file()
    return {
        "plugin": "pix2pix",
        "plugin_version": __version__,
        "options": to_dict(options),
        "data": str(data_root),
        "data_manifest_sha256": manifest_sha256(data_root) if has_manifest else None,
        "generator_params": count_parameters(net_g),
        "discriminator_params": count_parameters(net_d) if net_d is not None else None,
    }


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


@torch.no_grad()
def evaluate(net_g: nn.Module, loader, device: torch.device, channels_last: bool, amp_dtype: torch.dtype | None,
             keep: int) -> tuple[float, np.ndarray | None]:
    """Mean L1 (in [-1, 1] units) of G in eval mode over ``loader``, and a grid of the first ``keep``."""
    was_training = net_g.training
    net_g.eval()
    total, count = 0.0, 0
    rows: tuple[list, list, list] = ([], [], [])
    try:
        for batch in loader:
            a, b = to_device(check_batch(batch), device, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                fake = net_g(a)
            total += (fake.float() - b).abs().mean(dim=(1, 2, 3)).sum().item()
            count += a.shape[0]
            for i in range(a.shape[0]):
                if len(rows[0]) < keep:
                    for row, image in zip(rows, (batch["A"][i], to_uint8(fake[i]).cpu(), batch["B"][i]), strict=True):
                        row.append(image.permute(1, 2, 0).squeeze(2).numpy())
    finally:
        net_g.train(was_training)
    grid = sample_grid(*rows) if rows[0] else None
    return total / max(count, 1), grid


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
    runtime = setup_distributed(options.device)
    finished = False
    try:
        done = _train(options, Path(data).resolve(), Path(run_dir), objective, runtime, resume, overwrite, progress)
        finished = True
        return done
    finally:
        cleanup_distributed(runtime, finished=finished)


def _train(options: Pix2PixOptions, data_root: Path, run_dir: Path, objective: Objective, runtime: Runtime,
           resume: bool, overwrite: bool, show_progress: bool) -> Path:
    device, main = runtime.device, runtime.is_main
    check_setup(options, runtime)
    amp_dtype = resolve_precision(options.precision, device)
    channels_last = options.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # Data: fail early on a missing/empty dataset or a pair that does not fit the preprocessing.
    check_dataset_folder(data_root)
    train_files = split_files(data_root, "train")
    if options.max_dataset_size:
        train_files = train_files[: options.max_dataset_size]  # the first pairs in file order, as the reference
    jitter = Jitter(options.preprocess, options.load_size, options.crop_size, options.flip, train=True,
                    resize_backend=options.resize_backend)
    val_jitter = Jitter(options.preprocess, options.load_size, options.crop_size, options.flip, train=False,
                        resize_backend=options.resize_backend)
    check_pair_size(train_files[0], jitter)
    val_split = next((s for s in ("val", "test") if (data_root / s).is_dir() and any(iter_split(data_root, s))), None)
    val_files = split_files(data_root, val_split) if val_split else train_files[: max(1, options.sample_images)]
    if options.val_limit:
        val_files = val_files[: options.val_limit]
    check_pair_headers(train_files, jitter)  # every pair, before an --overwrite replaces the old run
    check_pair_headers(val_files, val_jitter)
    pairs = {"direction": options.direction, "input_nc": options.input_nc, "output_nc": options.output_nc, "seed": options.seed}
    train_set = AlignedPairs(train_files, jitter, **pairs)
    sampler = ResumableSampler(train_set, num_replicas=runtime.world_size, rank=runtime.rank, seed=options.seed,
                               shuffle=not options.serial_batches)
    pin = device.type == "cuda"
    loader = make_loader(train_set, batch_size=options.batch_size, workers=options.workers, sampler=sampler, pin_memory=pin, seed=options.seed)
    val_loader = make_loader(AlignedPairs(val_files, val_jitter, **pairs), batch_size=options.batch_size,
                             workers=min(options.workers, 2), sampler=None, pin_memory=pin) if main else None

    # Networks (the same initial weights on every rank: seeded, then DDP broadcasts rank 0's anyway).
    torch.manual_seed(options.seed)
    net_g, net_d = build_networks(options, objective)
    config = run_config(options, data_root, net_g, net_d)
    resuming = prepare_run(run_dir, config, resume=resume, overwrite=overwrite, runtime=runtime)
    if main:
        ckpt.start_run_dir(run_dir, config)
    nets_raw = {"G": net_g} | ({"D": net_d} if net_d is not None else {})
    for net in nets_raw.values():
        net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)

    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel per step on GPUs
    optimizers = {k: torch.optim.Adam(n.parameters(), lr=options.lr, betas=(options.beta1, options.beta2), **fused)
                  for k, n in nets_raw.items()}
    schedulers = {k: make_scheduler(options.lr_policy, o, epochs=options.epochs, epochs_decay=options.epochs_decay,
                                    decay_iters=options.lr_decay_iters) for k, o in optimizers.items()}
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, epoch, batches_done = 0, 0, 0
    seeds = np.random.SeedSequence([options.seed, runtime.rank]).generate_state(2)
    torch.manual_seed(int(seeds[0]))  # dropout stream of this rank
    np.random.seed(int(seeds[1]))
    random.seed(int(seeds[1]))
    if resuming:
        state = ckpt.load_checkpoint(run_dir, nets_raw, optimizers)
        for k, sched in schedulers.items():
            sched.load_state_dict(state["schedulers"][k])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        if runtime.rank < len(state["rng"]):
            ckpt.set_rng_state(state["rng"][runtime.rank])
        if device.type == "cpu" and state.get("cpu_threads") and state["cpu_threads"] != torch.get_num_threads():
            torch.set_num_threads(state["cpu_threads"])  # CPU sums split over threads: same count, same bits
        if main:
            ckpt.truncate_log(run_dir / "log.jsonl", step)
            drop_epoch_weights_after(run_dir, epoch)  # written after the checkpoint by the stopped run

    # Wrappers: DDP across processes; D's G-loss pass uses the plain module (its weights are frozen
    # there, so there is nothing to synchronise); optional torch.compile.
    ddp_args = {"device_ids": [device.index]} if device.type == "cuda" else {}
    g_train = DDP(net_g, **ddp_args) if runtime.distributed else net_g
    d_train = DDP(net_d, **ddp_args) if runtime.distributed and net_d is not None else net_d
    d_for_g = net_d
    if options.compile:
        g_train = torch.compile(g_train)
        d_train = torch.compile(d_train) if d_train is not None else None
        d_for_g = torch.compile(net_d) if net_d is not None else None
    nets = Nets(g_train, net_g, d_train, net_d, d_for_g)
    net_g.train()
    if net_d is not None:
        net_d.train()

    # Checkpoints: the full state is copied off the device and written in a background thread, at
    # most every --checkpoint-minutes (plus --checkpoint-every steps, the end, SIGINT/SIGTERM).
    checkpointer = Checkpointer(run_dir, runtime, nets_raw, optimizers, options.checkpoint_minutes)

    def save(epoch_: int, batches_: int) -> None:
        checkpointer.save({
            "step": step, "epoch": epoch_, "batches_done": batches_,
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "world_size": runtime.world_size, "distributed": runtime.distributed, "cpu_threads": torch.get_num_threads()})

    # The loop.
    steps_per_epoch = math.ceil(sampler.num_samples / options.batch_size)
    total_epochs = options.epochs + options.epochs_decay
    total_steps = steps_per_epoch * total_epochs
    if options.max_steps:
        total_steps = min(total_steps, options.max_steps)
    stall_at = int(os.environ.get(STALL_ENV, "0"))
    run_log = RunLog(run_dir, parse_trackers(options.log), resume_step=step, config=config) if main else contextlib.nullcontext()
    bar = make_progress(show_progress and main, StatsColumn())
    meter = Meter()
    evaluated = False
    with stop_on_signals() as stop, bar, checkpointer, run_log:
        task = bar.add_task("train pix2pix", total=total_steps, completed=step, stats="")
        terms_text, val_text = "", ""  # the bar's status: latest averaged losses, latest val_L1
        while epoch < total_epochs and step < total_steps:
            sampler.set_epoch(epoch)
            sampler.set_start(batches_done * options.batch_size)
            for batch in loader:
                real_a, real_b = to_device(check_batch(batch), device, channels_last)
                terms = train_step(real_a, real_b, nets, optimizers, scaler, objective, options, amp_dtype)
                step, batches_done = step + 1, batches_done + 1
                meter.add(terms, real_a.shape[0] * runtime.world_size)
                if step % options.log_every == 0 and main:
                    record = {"step": step, "epoch": epoch + 1, **meter.flush(), "lr": optimizers["G"].param_groups[0]["lr"]}
                    run_log.record(record)
                    terms_text = " ".join(f"{k.replace('images_per_s', 'images/s')} {v:.3g}" for k, v in record.items()
                                          if k not in ("step", "epoch", "lr"))
                    bar.update(task, completed=step, stats=" ".join(filter(None, (f"epoch {epoch + 1}/{total_epochs}", terms_text, val_text))))
                else:
                    bar.update(task, completed=step)
                while step == stall_at and not stop:
                    time.sleep(0.05)
                # ranks agree on stopping and on a due checkpoint (a collective: every 10 steps under
                # DDP, to spare a sync per step)
                timely = options.checkpoint_minutes > 0 and checkpointer.due()
                stopping, timely = any_ranks((bool(stop), timely), runtime) if not runtime.distributed or step % 10 == 0 else (False, False)
                finished = step >= total_steps
                mid_epoch = batches_done < steps_per_epoch
                every = options.checkpoint_every and step % options.checkpoint_every == 0
                if stopping or (mid_epoch and (finished or every or timely)):
                    save(epoch, batches_done)
                if stopping:
                    checkpointer.wait()
                    bar.stop()  # the bar's last frame stays above the message, not redrawn below it
                    if main:
                        console.print(f"interrupted: checkpoint saved at step {step}; continue with "
                                      f"`p2ptools train --resume {run_dir}`")
                    raise KeyboardInterrupt(f"training stopped by signal {stop.signal} at step {step}")
                if finished:
                    break
            if batches_done < steps_per_epoch:
                break  # max_steps reached mid-epoch (already saved)
            # Epoch end: validation, next lr (plateau follows rank 0's validation L1), samples, checkpoint.
            val_l1, grid = None, None
            if main:
                if not evaluated and options.workers:
                    checkpointer.wait()  # no thread running while the validation loader forks its workers
                evaluated = True
                val_l1, grid = evaluate(net_g, val_loader, device, channels_last, amp_dtype, options.sample_images)
            if any(needs_metric(sched) for sched in schedulers.values()):
                val_l1 = broadcast_float(val_l1, runtime)
            for sched in schedulers.values():
                step_scheduler(sched, val_l1)
            if main:
                if grid is not None:
                    write_samples(run_dir / "samples", epoch + 1, grid, val_l1)
                    run_log.image(step, grid)
                record = {"step": step, "epoch": epoch + 1, "val_L1": round(val_l1, 6), "val_split": val_split or "train",
                          "lr": optimizers["G"].param_groups[0]["lr"]}
                run_log.record(record)
                val_text = f"val_L1 {val_l1:.4g}"
                bar.update(task, stats=" ".join(filter(None, (f"epoch {epoch + 1}/{total_epochs} done", terms_text, val_text))))
            epoch, batches_done = epoch + 1, 0
            if options.save_epoch_freq and epoch % options.save_epoch_freq == 0:
                checkpointer.save_epoch_weights(epoch)
            last = epoch >= total_epochs or step >= total_steps
            if last or any_rank(checkpointer.due(), runtime):
                save(epoch, batches_done)
    return run_dir

