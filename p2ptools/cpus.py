"""How many CPU cores this process may use: the default of every ``--workers`` option."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPU cores this process may run on: its affinity mask (what containers, cgroups' cpusets and
    ``taskset`` leave it), else ``os.cpu_count()``; at least 1.

    Example: on a 2-core VM ``available_cpus() == 2`` even where the host has 64 cores.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def default_workers(cap: int) -> int:
    """Worker processes by default: ``min(cap, available_cpus())``, so that a small machine is not
    oversubscribed (and torch's DataLoader does not warn about more workers than cores)."""
    return min(cap, available_cpus())
