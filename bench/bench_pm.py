"""PmEngine figures: appends, reads per tier, open time (prints, asserts nothing).

    .venv/bin/python bench/bench_pm.py            # full run (about 1-2 minutes)
    .venv/bin/python bench/bench_pm.py --quick    # fewer iterations, no full-pool open

- prepare+commit per second and p50/p99 of one pair, 100 B and 4 KiB entries,
  on /dev/shm with PMEM_IS_PMEM_FORCE=1 and on a normal file (msync path, in a
  child process because libpmem reads the variable once per process);
- the same with prepare_many + commit_many of 1, 16 and 256 entries per call
  (group commit), as entries per second and as a ratio to one call per entry;
- the ceilings: the two C helpers called from Python without the engine, and
  the same bytes copied into a /dev/shm mmap from Python;
- reads per second served from the DRAM cache, from PM and from the SSD tier
  (segments on the normal file system, warm in the page cache);
- open time of a full default-size (256 MiB) pool, which rebuilds the index.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flexlog.core.storage import StoreFull
from flexlog.pm._pmem import lib
from flexlog.pm.engine import PmEngine
from flexlog.pm.pool import Pool

SIZES = (100, 4096)
BATCHES = (1, 16, 256)
BATCHED_HEADER = (
    "| pool | entry | batch | entries | entries/s | vs one call per entry |\n"
    "|---|---|---|---|---|---|"
)


def percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@contextmanager
def scratch(parent: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="flexlog-bench-pm-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def payload(size: int) -> bytes:
    return bytes(8) + os.urandom(size - 8)


def appends(parent: str, size: int, n: int) -> tuple[float, float, float]:
    """(pairs per second, p50 us, p99 us) of prepare+commit into a fresh engine."""
    data = payload(size)
    lat: list[int] = [0] * n
    clock = time.perf_counter_ns
    with scratch(parent) as d:
        eng = PmEngine(d, ssd_max_bytes=0)
        try:
            started = clock()
            for i in range(n):
                t = clock()
                eng.prepare(i, 1, data, 1)
                eng.commit(i, i)
                lat[i] = clock() - t
            elapsed = (clock() - started) / 1e9
        finally:
            eng.close()
    return n / elapsed, percentile(lat, 50) / 1000, percentile(lat, 99) / 1000


def batched_appends(parent: str, size: int, n: int, batch: int) -> float:
    """Entries per second of prepare_many + commit_many of batch entries at a time."""
    data = payload(size)
    with scratch(parent) as d:
        eng = PmEngine(d, ssd_max_bytes=0)
        try:
            started = time.perf_counter()
            for first in range(0, n, batch):
                tokens = range(first, min(n, first + batch))
                eng.prepare_many([(t, 1, data, 1) for t in tokens])
                eng.commit_many([(t, t) for t in tokens])
            return n / (time.perf_counter() - started)
        finally:
            eng.close()


def batched_rows(pool: str, parent: str, size: int, n: int, unbatched: float) -> None:
    for batch in BATCHES:
        # Enough entries for at least 40 calls, without outgrowing the pool's arena.
        count = min(max(n, 40 * batch), (200 << 20) // (size + 64))
        rate = batched_appends(parent, size, count, batch)
        print(f"| {pool} | {size} B | {batch} | {count} | {rate:,.0f}/s | {rate / unbatched:.2f} |")


def c_helpers_only(size: int, n: int) -> float:
    """Pairs per second of the two C calls alone, driven from Python without the engine."""
    data = payload(size)
    with scratch("/dev/shm") as d:
        pool = Pool(d / "pm.pool", 256 << 20, 16)
        try:
            started = time.perf_counter()
            for i in range(n):
                pos = lib.pm_prepare(pool.log, i, 1, data, size, 1)
                lib.pm_commit(pool.log, pos, i, i, 0)
                if pool.used > pool.cap // 2:
                    lib.pm_advance(pool.log, pool.tail)
            return n / (time.perf_counter() - started)
        finally:
            pool.close()


def memcpy_ceiling(size: int, n: int) -> float:
    """Copies per second of the same payload into a /dev/shm mapping, from Python."""
    data = payload(size)
    region = 64 << 20
    with scratch("/dev/shm") as d:
        path = d / "ceiling"
        with open(path, "wb") as f:
            f.truncate(region)
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), region) as mm:
            mm[:] = bytes(region)  # fault the pages in first, as pool creation does for the arena
            slots = region // size
            started = time.perf_counter()
            for i in range(n):
                off = (i % slots) * size
                mm[off : off + size] = data
            return n / (time.perf_counter() - started)


def reads(size: int, n: int) -> dict[str, float]:
    """Reads per second of committed entries, from each tier in turn."""
    data = payload(size)
    out = {}
    with scratch("/dev/shm") as d, scratch(tempfile.gettempdir()) as ssd:
        eng = PmEngine(d, cache_bytes=1 << 30, ssd_dir=ssd)
        try:
            for i in range(n):
                eng.prepare(i, 1, data, 1)
                eng.commit(i, i)
            _read_all(eng, n)  # the first read of an entry fills the cache
            out["cache"] = _read_all(eng, n)
        finally:
            eng.close()
        eng = PmEngine(d, cache_bytes=0, ssd_dir=ssd)
        try:
            out["pm"] = _read_all(eng, n)
            eng.checkpoint()
            out["ssd"] = _read_all(eng, n)
        finally:
            eng.close()
    return out


def _read_all(eng: PmEngine, n: int) -> float:
    started = time.perf_counter()
    for sn in range(n):
        eng.read(1, sn)
    return n / (time.perf_counter() - started)


def open_full_pool(size: int) -> tuple[int, float, float]:
    """Fill a default pool to StoreFull, reopen: (entries, fill seconds, open seconds)."""
    data = payload(size)
    with scratch("/dev/shm") as d:
        # No SSD room: the pool fills up and stays full instead of spilling to SSD.
        eng = PmEngine(d, ssd_max_bytes=0, cache_bytes=0)
        started = time.perf_counter()
        n = 0
        try:
            while True:
                eng.prepare(n, n % 64, data, 1)
                eng.commit(n, n // 64)
                n += 1
        except StoreFull:
            pass
        fill = time.perf_counter() - started
        eng.close()
        eng = PmEngine(d)
        opened = eng.open_seconds
        eng.close()
    return n, fill, opened


def msync_child(quick: bool) -> None:
    """Runs without PMEM_IS_PMEM_FORCE: a pool file on the normal file system.

    Prints its rows of the unbatched table, a line "--", then its batched rows.
    """
    n = 300 if quick else 2000
    unbatched = {}
    for size in SIZES:
        rate, p50, p99 = appends(tempfile.gettempdir(), size, n)
        unbatched[size] = rate
        print(f"| normal file (msync) | {size} B | {n} | {rate:,.0f}/s | {p50:.1f} | {p99:.1f} |")
    print("--")
    for size in SIZES:
        batched_rows("normal file (msync)", tempfile.gettempdir(), size, n, unbatched[size])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--msync-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.msync_child:
        msync_child(args.quick)
        return
    if os.environ.get("PMEM_IS_PMEM_FORCE") != "1":
        env = {**os.environ, "PMEM_IS_PMEM_FORCE": "1"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    scale = 10 if args.quick else 1
    print("## prepare+commit (one pair = one append)")
    print(
        "| pool | entry | pairs | pairs/s | p50 us | p99 us | C helpers alone/s "
        "| memcpy ceiling/s | ratio to memcpy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    unbatched = {}
    for size, n in zip(SIZES, (300_000, 60_000), strict=True):
        rate, p50, p99 = appends("/dev/shm", size, n // scale)
        unbatched[size] = rate
        c_only = c_helpers_only(size, n // scale)
        ceiling = memcpy_ceiling(size, n // scale)
        print(
            f"| /dev/shm + FORCE | {size} B | {n // scale} | {rate:,.0f}/s | {p50:.1f} | "
            f"{p99:.1f} | {c_only:,.0f}/s | {ceiling:,.0f}/s | {rate / ceiling:.2f} |"
        )
    sys.stdout.flush()
    env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
    cmd = [sys.executable, __file__, "--msync-child", *(["--quick"] if args.quick else [])]
    child = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    msync_rows, msync_batched = child.split("--\n")
    print(msync_rows, end="")

    print("\n## prepare_many + commit_many (group commit: one barrier per call)")
    print(BATCHED_HEADER)
    for size, n in zip(SIZES, (300_000, 60_000), strict=True):
        batched_rows("/dev/shm + FORCE", "/dev/shm", size, n // scale, unbatched[size])
    print(msync_batched, end="")

    print("\n## reads (read(color, sn), one entry each)")
    print("| entry | entries | cache/s | PM/s | SSD/s |")
    print("|---|---|---|---|---|")
    for size, n in zip(SIZES, (200_000, 40_000), strict=True):
        r = reads(size, n // scale)
        print(f"| {size} B | {n // scale} | {r['cache']:,.0f} | {r['pm']:,.0f} | {r['ssd']:,.0f} |")

    if not args.quick:
        print("\n## open of a full default pool (256 MiB, /dev/shm), index rebuilt from the arena")
        print("| entry | entries | fill s | open s |")
        print("|---|---|---|---|")
        for size in (4096, 100):
            n, fill, opened = open_full_pool(size)
            print(f"| {size} B | {n:,} | {fill:.1f} | {opened:.2f} |")


if __name__ == "__main__":
    main()
