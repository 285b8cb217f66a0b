"""The C allocator's settings for a long-running server process (glibc only).

glibc serves a ``malloc`` of 128 KiB or more with its own ``mmap`` and, when
such a block is freed, raises that threshold to the block's size (up to
32 MiB): from then on blocks that size come from the heap. In a server whose
connections come and go, those blocks leave holes the heap cannot give back,
so it keeps growing while the memory in use stays flat. Measured with the
stress suite's soak on asyncio (docs/reliability.md, finding 6): glibc's heap
grew by about 1 MiB a minute with the threshold moving, and stayed flat with
it fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_=131072``), as with jemalloc.

``wskit serve`` (and each worker), like ``twistd wskit``, fixes the threshold at start unless the
environment sets ``MALLOC_MMAP_THRESHOLD_`` itself. Applications that embed
wskit decide for their own process: call :func:`fix_mmap_threshold`.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

# glibc's mallopt parameter for the mmap threshold (malloc.h: M_MMAP_THRESHOLD).
M_MMAP_THRESHOLD = -3
DEFAULT_MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold(nbytes: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (which also stops it moving).

    Returns True when set; False elsewhere than on glibc, or when the
    environment's ``MALLOC_MMAP_THRESHOLD_`` already chose (glibc read it at start).
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None:
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(nbytes)) == 1
