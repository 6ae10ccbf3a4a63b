"""glibc malloc settings for server processes, which allocate and free a megabyte-sized
buffer for every batch they move.

With glibc's defaults, a freed large buffer goes back to the kernel (munmap, or trimming
the heap's top once more than about twice the last such buffer is free), so the next
one is faulted in and zeroed page by page again. Under produce load that was a fifth of
the cluster's CPU per byte (docs/performance.md, "Produce cost per byte"). Keeping
buffers below MMAP_THRESHOLD in the heap and trimming only past TRIM_THRESHOLD reuses
the same pages; the price is that a process keeps up to TRIM_THRESHOLD of freed heap.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's upper bound for this setting on 64-bit
TRIM_THRESHOLD = 256 << 20
TOP_PAD = 16 << 20


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # Each setting also stops glibc from moving the thresholds itself, so all are set.
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (_M_TOP_PAD, TOP_PAD))
    for param, value in settings:
        if libc.mallopt(param, value) != 1:
            log.warning("mallopt(%d, %d) refused; large buffers are faulted in afresh", param,
                        value)
            return False
    return True
