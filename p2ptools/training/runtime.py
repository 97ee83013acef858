"""Where and how training runs: devices, processes (torchrun / DDP), precision, stop signals.

``torchrun --nproc_per_node N p2ptools train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
(and ``MASTER_ADDR``/``MASTER_PORT``); :func:`setup_distributed` then joins the process group with
NCCL on GPUs and gloo on the CPU. Without those variables training runs in one process. A
single torchrun process trains without a process group unless ``P2PTOOLS_DDP=1`` asks for one
(``benchmarks/gpu_check.sh`` uses it to exercise NCCL, DDP and SyncBatchNorm on one GPU).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from p2ptools.devices import resolve_device
from p2ptools.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """One training process: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and draws progress."""
        return self.rank == 0


#: Set to 1 (under torchrun) to use DistributedDataParallel even with one process.
FORCE_DDP_ENV = "P2PTOOLS_DDP"


def setup_distributed(device_name: str) -> Runtime:
    """Join the torchrun process group if the environment names one, and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    forced = os.environ.get(FORCE_DDP_ENV) == "1" and "RANK" in os.environ and "MASTER_ADDR" in os.environ
    if world_size <= 1 and not forced:
        return Runtime(0, 1, 0, device, False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Runtime(rank, world_size, local_rank, device, True)


def cleanup_distributed(runtime: Runtime, *, finished: bool) -> None:
    """Leave the process group joined by :func:`setup_distributed`.

    After a finished run every rank first waits for the others (``finished=True``): a rank that shuts
    its gloo connections down while a peer still uses them can abort either process. After a failure
    the other ranks may never arrive, so the group is left at once.
    """
    if not (runtime.distributed and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: None (fp32), bfloat16 or float16.

    ``auto``: bf16 on GPUs that support it, else fp16 on a GPU, fp32 on the CPU. Half precision is
    refused on the CPU (slow and not what anyone means there).
    """
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise ConfigError(f"--precision {precision}: mixed precision needs a CUDA device (this run uses {device})")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU does not support bfloat16; use fp16")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def any_rank(flag: bool, runtime: Runtime) -> bool:
    """True on every rank if ``flag`` is true on any (so that all ranks stop at the same step)."""
    return any_ranks((flag,), runtime)[0]


def any_ranks(flags: tuple[bool, ...], runtime: Runtime) -> tuple[bool, ...]:
    """:func:`any_rank` of several flags in one collective (e.g. "stop" and "checkpoint due")."""
    if not runtime.distributed:
        return tuple(bool(f) for f in flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v > 0) for v in t.tolist())


def broadcast_float(value: float | None, runtime: Runtime) -> float:
    """Rank 0's ``value`` on every rank (e.g. the validation L1 that only rank 0 computes)."""
    if not runtime.distributed:
        return float(value if value is not None else 0.0)
    t = torch.tensor([float(value) if value is not None and runtime.is_main else 0.0], dtype=torch.float64,
                     device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return float(t.item())


class StopRequest:
    """Set by SIGINT / SIGTERM; the training loop saves a checkpoint at the next step boundary."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handler(self, signum: int, frame: object) -> None:
        self.signal = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM while training (main thread only); restores the old handlers."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop._handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
