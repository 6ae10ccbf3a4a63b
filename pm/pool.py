"""A libpmemobj pool as seen from Python: open/close and reading the arena.

Everything that changes the pool goes through one C helper in `_pmem.lib`
(called directly by the engine to keep the hot path short); this module holds
the cold paths around them: opening, reading entry headers and payloads,
turning C status codes into exceptions.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from flexlog.core.storage import StoreFull
from flexlog.pm._pmem import ffi, lib
from flexlog.pm.index import Run, new_run, sort_run

ENTRY_HDR: int = lib.PM_ENTRY_HDR
# The first 48 bytes of struct pm_entry (timestamps are not needed in Python).
_HEADER = struct.Struct("<QQQQIIII")
MIN_POOL_BYTES = 8 << 20  # PMEMOBJ_MIN_POOL
_RUN_CTYPES = ("uint64_t", "uint32_t", "uint32_t", "int64_t")  # matches index.Run


class PoolError(OSError):
    """The pool cannot be opened or a C helper reported a broken invariant."""


class EntryHeader(NamedTuple):
    state: int
    token: int
    color: int
    sn: int
    count: int
    length: int
    size: int
    slot: int


def slot_bytes(length: int) -> int:
    """Arena bytes one entry of `length` payload bytes takes (mirrors slot_size in C)."""
    return ENTRY_HDR + ((length + 63) & ~63)


def check(rc: int, what: str) -> int:
    """Pass a non-negative C result through; raise for an error code."""
    if rc >= 0:
        return rc
    raise error(rc, what)


def error(rc: int, what: str) -> Exception:
    """The exception for a negative C status (the batch calls return one per item)."""
    if rc == lib.PM_EFULL:
        return StoreFull(f"{what}: persistent-memory arena full")
    if rc == lib.PM_ECOLOR:
        # The table's size is fixed when the pool is created and no config key sets it.
        return StoreFull(f"{what}: the pool's per-color table is full (its size was fixed when the "
                         "pool was created); this replica cannot take a new color")
    if rc == lib.PM_ENOMEM:
        return MemoryError(f"{what}: no memory for the commit batch's bookkeeping")
    return PoolError(f"{what}: pool invariant violated (status {rc})")


class Pool:
    """An open pool. `log` is the C handle the engine passes to the helpers."""

    def __init__(self, path: Path, pool_size: int, max_colors: int) -> None:
        if pool_size < MIN_POOL_BYTES:
            raise ValueError(f"pool_size_bytes must be at least {MIN_POOL_BYTES}")
        err = ffi.new("char[512]")
        log = lib.pm_open(str(path).encode(), pool_size, max_colors, err, len(err))
        if log == ffi.NULL:
            raise PoolError(ffi.string(err).decode(errors="replace"))
        self.path = path
        self.log = log
        self.root = log.root
        self.cap: int = log.cap
        # Slicing a cffi buffer copies into fresh bytes: nothing handed out points into PM.
        self.buf = ffi.buffer(log.arena, self.cap)

    @property
    def head(self) -> int:
        return self.root.head

    @property
    def tail(self) -> int:
        return self.root.tail

    @property
    def used(self) -> int:
        return self.root.tail - self.root.head

    def header(self, pos: int) -> EntryHeader:
        return EntryHeader._make(_HEADER.unpack_from(self.buf, pos % self.cap))

    def payload(self, pos: int, length: int) -> bytes:
        start = pos % self.cap + ENTRY_HDR
        return self.buf[start : start + length]

    def payload_view(self, pos: int, length: int) -> memoryview:
        """A zero-copy view, valid only until the pool changes (checkpoint writes use it)."""
        start = pos % self.cap + ENTRY_HDR
        return memoryview(self.buf)[start : start + length]

    def scan(self) -> tuple[dict[int, Run], list[int]]:
        """Live committed entries per color slot, each run in SN order; prepared positions.

        Two C passes (count, then fill arrays sized from the counts), so a pool
        of a million small entries opens without a Python loop over them.
        """
        n = self.root.n_colors or 1
        per_slot = ffi.new("uint64_t[]", n)
        n_prepared = ffi.new("uint64_t *")
        if lib.pm_scan_count(self.log, per_slot, n_prepared) != lib.PM_OK:
            raise PoolError(f"{self.path}: the arena is damaged between head and tail")
        columns = [ffi.new(f"{ctype} *[]", n) for ctype in _RUN_CTYPES]
        runs: dict[int, Run] = {}
        buffers = []  # views into the arrays, alive until the fill call is done
        for slot in range(self.root.n_colors):
            if per_slot[slot]:
                runs[slot] = new_run(per_slot[slot])
                for pointers, ctype, column in zip(columns, _RUN_CTYPES, runs[slot], strict=True):
                    buffers.append(ffi.from_buffer(f"{ctype}[]", column, require_writable=True))
                    pointers[slot] = buffers[-1]
        unsorted = ffi.new("uint8_t[]", n)
        prepared = ffi.new("uint64_t[]", n_prepared[0] or 1)
        cursor = ffi.new("uint64_t[]", n)
        lib.pm_scan_fill(self.log, *columns, cursor, unsorted, prepared)
        del buffers  # an array exporting its buffer cannot grow later
        for slot, run in runs.items():
            if unsorted[slot]:
                runs[slot] = sort_run(run)
        return runs, list(prepared[0 : n_prepared[0]])

    def colors(self) -> Iterator[tuple[int, int, int, int]]:
        """(slot, color, log_start, tail) of every claimed metadata slot."""
        for slot in range(self.root.n_colors):
            c = self.log.colors[slot]
            yield slot, c.color, c.log_start, c.tail

    def close(self) -> None:
        lib.pm_close(self.log)
        self.log = self.root = self.buf = None
