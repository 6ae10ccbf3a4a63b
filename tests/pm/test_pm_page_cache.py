"""A pool on a normal file system writes back about what it changed (docs/storage.md,
"Page cache"): a store dirties its 4 KiB page, not the large folio around it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

POOL = 256 << 20
ENTRY = 100 << 10
PER_BATCH = 4
BATCHES = 150


def dirtied_per_byte_stored(data_dir: Path) -> float:
    """Bytes the engine's process dirtied in the page cache (/proc/self/io write_bytes, which
    counts whole folios) per payload byte, over prepare_many + commit_many of 4 x 100 KiB
    batches; run without PMEM_IS_PMEM_FORCE, so every barrier is an msync."""
    script = textwrap.dedent(
        f"""
        import os
        from flexlog.pm.engine import PmEngine

        def written():
            for line in open("/proc/self/io"):
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])

        eng = PmEngine({str(data_dir)!r}, pool_size_bytes={POOL})
        payload = os.urandom({ENTRY})
        before = written()
        token = sn = 0
        for _ in range({BATCHES}):
            items = [(token + i, 1, payload, 1) for i in range({PER_BATCH})]
            assert eng.prepare_many(items) == [None] * {PER_BATCH}
            eng.commit_many([(token + i, sn + i) for i in range({PER_BATCH})])
            token += {PER_BATCH}
            sn += {PER_BATCH}
        print((written() - before) / ({ENTRY} * {PER_BATCH} * {BATCHES}))
        eng.close()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


def test_a_fresh_pool_writes_back_about_what_it_stores(tmp_path: Path):
    # Creating the pool zeroes the arena through the mapping, so the page cache held it
    # in large folios: before the arena was re-cached in pages, this was about 8.
    assert dirtied_per_byte_stored(tmp_path) < 2.0


def test_a_reopened_pool_writes_back_about_what_it_stores(tmp_path: Path):
    dirtied_per_byte_stored(tmp_path)
    # What a copy or a backup of the file does between two runs: read through with
    # readahead, which caches it in large folios (before: about 14 here).
    fd = os.open(tmp_path / "pm.pool", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)
    assert dirtied_per_byte_stored(tmp_path) < 2.0
