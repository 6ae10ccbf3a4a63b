"""glibc malloc settings for server processes, which allocate and free a megabyte-sized
buffer for every batch they move.

With glibc's defaults, a freed large buffer goes back to the kernel (munmap, or trimming
the heap's top once more than about twice the last such buffer is free), so the next
one is faulted in and zeroed page by page again. Under produce load that was a fifth of
the cluster's CPU per byte (docs/performance.md, "Produce cost per byte"). Keeping
buffers below MMAP_THRESHOLD in the heap and trimming only past TRIM_THRESHOLD reuses
the same pages; the price is that each malloc arena (the main thread's, and one per
thread of gRPC's that allocates) may keep up to TRIM_THRESHOLD of freed memory.

An operator who sets glibc's malloc tunables in the environment keeps them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for this setting on 64-bit
TRIM_THRESHOLD = 256 << 20
TOP_PAD = 16 << 20


def operator_tunables() -> bool:
    """Whether the environment sets glibc's malloc tunables (GLIBC_TUNABLES, MALLOC_*_)."""
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(
        name.startswith("MALLOC_") and name.endswith("_") for name in os.environ)


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library is not glibc, where the
    environment sets malloc tunables, or where glibc refuses a setting."""
    if platform.libc_ver()[0] != "glibc" or operator_tunables():
        return False
    libc = ctypes.CDLL(None)
    # Each setting also stops glibc from moving the thresholds itself, so all are set.
    settings = {"M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                "M_TOP_PAD": (_M_TOP_PAD, TOP_PAD)}
    refused = [f"{name}={value}" for name, (param, value) in settings.items()
               if libc.mallopt(param, value) != 1]
    if refused:
        log.warning("glibc refused mallopt %s; large buffers may be faulted in afresh",
                    ", ".join(refused))
    return not refused
