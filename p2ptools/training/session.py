"""The set-up every GAN trainer repeats, in the order that keeps a resumed run bit-exact.

A trainer (see ``plugins/p2ptools_pix2pix/trainer.py``) reads top to bottom as:

1. :func:`processes` around the whole run (torchrun/DDP process group, torn down on failure too);
2. :func:`hardware`: mixed precision, channels_last, cudnn flags;
3. its own data checks, then :func:`dataset_splits` and :func:`make_loaders`;
4. ``torch.manual_seed(options.seed)``, its networks (the same initial weights on every rank),
   :func:`run_config` (``config.json``);
5. :func:`open_session`: the run directory checked and claimed, nets moved to the device,
   optimisers, lr schedulers, grad scaler, the per-rank seeds, and the checkpoint restored when
   resuming (the seeds come before the restore, which replaces them);
6. :func:`wrap` for the networks as trained (DDP, ``torch.compile``);
7. :func:`p2ptools.training.epoch_loop.run_epochs` with its step and validation.

Moving a line of this order moves an RNG draw: ``tests/training/test_golden_bytes.py`` notices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from p2ptools.pairs import MANIFEST_NAME, iter_split, manifest_sha256
from p2ptools.training import checkpoint as ckpt
from p2ptools.training.data import ResumableSampler, check_dataset_folder, make_loader, split_files
from p2ptools.training.options import TrainOptions
from p2ptools.training.runtime import Runtime, cleanup_distributed, resolve_precision, setup_distributed
from p2ptools.training.schedules import make_scheduler
from p2ptools.training.state import Position, prepare_run, restore_training, seed_rank
from p2ptools.training.tracking import check_trackers, parse_trackers


@contextlib.contextmanager
def processes(device: str) -> Iterator[Runtime]:
    """This process's place in the run: one process, or a rank of a ``torchrun`` job (the process
    group is set up here and destroyed on leaving, after a failure too)."""
    runtime = setup_distributed(device)
    finished = False
    try:
        yield runtime
        finished = True
    finally:
        cleanup_distributed(runtime, finished=finished)


@dataclass(frozen=True)
class Hardware:
    """How the networks run: the device, the autocast dtype (None: fp32) and the memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def hardware(options: TrainOptions, runtime: Runtime) -> Hardware:
    """``--precision`` and ``--channels-last`` resolved for this device; cudnn autotuning on GPUs."""
    device = runtime.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Hardware(device, resolve_precision(options.precision, device), options.channels_last and device.type == "cuda")


@dataclass(frozen=True)
class Splits:
    """The pair files a run trains and validates on; ``val_split`` None: validation on the first
    training pairs (the dataset has no val or test split)."""

    train: list[Path]
    val: list[Path]
    val_split: str | None


def dataset_splits(data_root: Path, options: TrainOptions, *, limit: int = 0) -> Splits:
    """Training pairs (the first ``limit`` in file order when > 0) and validation pairs: the ``val``
    split, else ``test``, else the first ``sample_images`` training pairs; at most ``--val-limit``.
    A missing or empty dataset is an :class:`~p2ptools.errors.InputFileError`."""
    check_dataset_folder(data_root)
    train = split_files(data_root, "train")
    if limit:
        train = train[:limit]
    val_split = next((s for s in ("val", "test") if (data_root / s).is_dir() and any(iter_split(data_root, s))), None)
    val = split_files(data_root, val_split) if val_split else train[: max(1, options.sample_images)]
    if options.val_limit:
        val = val[: options.val_limit]
    return Splits(train, val, val_split)


@dataclass(frozen=True)
class Loaders:
    """The training loader and its resumable sampler; the validation loader (rank 0 only, else None)."""

    train: DataLoader
    sampler: ResumableSampler
    val: DataLoader | None
    val_split: str | None


def make_loaders(train_set: Dataset, val_set: Dataset, options: TrainOptions, runtime: Runtime, val_split: str | None, *,
                 shuffle: bool = True) -> Loaders:
    """Loaders of ``--batch-size`` with ``--workers`` processes; the training order depends only on
    ``(seed, epoch)`` and this rank (see :class:`ResumableSampler`)."""
    sampler = ResumableSampler(train_set, num_replicas=runtime.world_size, rank=runtime.rank, seed=options.seed, shuffle=shuffle)
    pin = runtime.device.type == "cuda"
    loader = make_loader(train_set, batch_size=options.batch_size, workers=options.workers, sampler=sampler, pin_memory=pin,
                         seed=options.seed)
    val = make_loader(val_set, batch_size=options.batch_size, workers=min(options.workers, 2), sampler=None,
                      pin_memory=pin) if runtime.is_main else None
    return Loaders(loader, sampler, val, val_split)


def count_parameters(net: nn.Module | None) -> int | None:
    """Trainable and frozen parameters of ``net`` (None for no network)."""
    return None if net is None else sum(p.numel() for p in net.parameters())


def run_config(plugin: str, version: str, options: Any, data_root: Path, net_g: nn.Module, net_d: nn.Module | None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``config.json`` holds (GUIDE: plugin, version, options, data, manifest hash, sizes);
    ``extra`` goes before the sizes (e.g. the sha256 of the weight files the options name)."""
    from p2ptools.options import to_dict

    has_manifest = (data_root / MANIFEST_NAME).is_file()
    return {
        "plugin": plugin,
        "plugin_version": version,
        "options": to_dict(options),
        "data": str(data_root),
        "data_manifest_sha256": manifest_sha256(data_root) if has_manifest else None,
        **(extra or {}),
        "generator_params": count_parameters(net_g),
        "discriminator_params": count_parameters(net_d),
    }


@dataclass
class Session:
    """A run being trained: where, by which process, with what, and from where it continues.

    ``nets`` are the plain modules (what checkpoints hold), on the device; ``position`` is where
    training stands (the restored checkpoint's when ``resuming``).
    """

    run_dir: Path
    runtime: Runtime
    hw: Hardware
    config: dict[str, Any]
    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    scaler: torch.amp.GradScaler
    position: Position
    resuming: bool

    @property
    def is_main(self) -> bool:
        return self.runtime.is_main

    def lr(self, name: str = "G") -> float:
        """The current learning rate of network ``name``'s optimiser (what the log shows)."""
        return self.optimizers[name].param_groups[0]["lr"]


def open_session(run_dir: Path, config: dict[str, Any], nets: dict[str, nn.Module], options: TrainOptions, runtime: Runtime,
                 hw: Hardware, *, resume: bool, overwrite: bool) -> Session:
    """Check and claim the run directory, then build everything a step needs (module docstring, 5).

    The networks go to the device in training mode. Adam per network (``--lr``, ``--beta1``,
    ``--beta2``; fused on GPUs), the ``--lr-policy``
    scheduler per optimiser, a grad scaler (enabled for fp16), this rank's seeds; when resuming,
    the checkpoint is restored over all of it.
    """
    check_trackers(parse_trackers(options.log))  # a missing tracker package fails before the run directory changes
    resuming = prepare_run(run_dir, config, resume=resume, overwrite=overwrite, runtime=runtime)
    if runtime.is_main:
        ckpt.start_run_dir(run_dir, config)
    for net in nets.values():
        net.to(hw.device, memory_format=torch.channels_last if hw.channels_last else torch.preserve_format)
        net.train()
    fused = {"fused": True} if hw.device.type == "cuda" else {}  # one kernel per step on GPUs
    optimizers = {k: torch.optim.Adam(n.parameters(), lr=options.lr, betas=(options.beta1, options.beta2), **fused)
                  for k, n in nets.items()}
    schedulers = {k: make_scheduler(options.lr_policy, o, epochs=options.epochs, epochs_decay=options.epochs_decay,
                                    decay_iters=options.lr_decay_iters) for k, o in optimizers.items()}
    scaler = torch.amp.GradScaler(hw.device.type, enabled=hw.amp_dtype == torch.float16)
    position = Position()
    seed_rank(options.seed, runtime.rank)
    if resuming:
        position = restore_training(run_dir, runtime, nets, optimizers, schedulers, scaler)
    return Session(Path(run_dir), runtime, hw, config, nets, optimizers, schedulers, scaler, position, resuming)


def wrap(net: nn.Module | None, session: Session, *, compile: bool, ddp: bool = True) -> nn.Module | None:
    """``net`` as a step calls it: DDP-wrapped under torchrun (``ddp``), compiled with ``compile``.

    Pass ``ddp=False`` for a network whose parameters are frozen in that call (a discriminator in
    the generator's loss: nothing to synchronise).
    """
    if net is None:
        return None
    runtime = session.runtime
    args = {"device_ids": [session.hw.device.index]} if session.hw.device.type == "cuda" else {}
    module = DDP(net, **args) if runtime.distributed and ddp else net
    return torch.compile(module) if compile else module


def set_requires_grad(nets: nn.Module | Sequence[nn.Module] | None, flag: bool) -> None:
    """Freeze (``False``) or unfreeze a network's parameters (None: nothing)."""
    if nets is None:
        return
    for net in [nets] if isinstance(nets, nn.Module) else nets:
        for p in net.parameters():
            p.requires_grad_(flag)
