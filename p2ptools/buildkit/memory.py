"""Allocator settings for build workers.

A build worker decodes, joins and encodes images of the same few sizes over and over. glibc's
malloc serves such blocks (hundreds of KiB) with ``mmap`` and gives them back to the kernel on
``free``; every next image then touches fresh pages, and each page fault costs a kernel entry and
a zeroed page. On a 2-core VM that doubled the cost of joining two 256x256 halves (hconcat 193 µs
-> 15 µs per pair with the settings below) and added ~0.5 ms of system time per pair.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks below this come from the heap, whose freed memory is reused (glibc's ceiling is 32 MiB).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap is kept up to this much before it is returned to the kernel.
TRIM_THRESHOLD = 512 << 20


def keep_freed_memory() -> bool:
    """Make glibc reuse freed image buffers instead of returning them to the kernel.

    Meant for worker processes that p2ptools starts itself (the setting is process-wide). Returns
    whether it took effect: False on other C libraries and platforms, where nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
