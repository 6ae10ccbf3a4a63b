"""A pool on a normal file system writes back about what it changed (docs/storage.md,
"Page cache"): a barrier writes the blocks the engine stored into, not the large folios
around them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pm_helpers import run_on_msync_path

POOL = 256 << 20


def device_stat(path: Path) -> Path:
    dev = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if os.major(dev) == 0 or not stat.exists():
        pytest.skip(f"{path} is on no block device (tmpfs?)")
    return stat


def written_per_byte_stored(data_dir: Path, entry: int, per_batch: int, batches: int) -> float:
    """Bytes the device holding data_dir wrote (its sector count, after a sync) per payload
    byte, over prepare_many + commit_many of batches of per_batch entries, run without
    PMEM_IS_PMEM_FORCE so every barrier is an msync. Other writers on the machine add a
    little; the test's bound leaves room for them."""
    stat = device_stat(data_dir.parent)
    return float(run_on_msync_path(
        f"""
        import os
        from flexlog.pm.engine import PmEngine

        def sectors():
            return int(open({str(stat)!r}).read().split()[6])

        eng = PmEngine({str(data_dir)!r}, pool_size_bytes={POOL})
        payload = os.urandom({entry})
        os.sync()
        before = sectors()
        token = sn = 0
        for _ in range({batches}):
            items = [(token + i, 1, payload, 1) for i in range({per_batch})]
            assert eng.prepare_many(items) == [None] * {per_batch}
            eng.commit_many([(token + i, sn + i) for i in range({per_batch})])
            token += {per_batch}
            sn += {per_batch}
        os.sync()
        print((sectors() - before) * 512 / ({entry} * {per_batch} * {batches}))
        eng.close()
        """
    ))


def read_through(path: Path) -> None:
    """What a copy or a backup of the file does between two runs: read it with readahead,
    which caches it in large folios."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)


def test_a_fresh_pool_writes_back_about_what_it_stores(tmp_path: Path):
    # Creating the pool zeroes the arena through the mapping, so the page cache holds it in
    # large folios: with the stores through the mapping this was about 10.
    assert 0.9 < written_per_byte_stored(tmp_path / "pool", 100 << 10, 4, 150) < 3.0


def test_a_reopened_pool_writes_back_about_what_it_stores(tmp_path: Path):
    written_per_byte_stored(tmp_path / "pool", 100 << 10, 4, 150)
    read_through(tmp_path / "pool" / "pm.pool")
    assert 0.9 < written_per_byte_stored(tmp_path / "pool", 100 << 10, 4, 150) < 3.0


def test_stores_go_through_the_mapping_without_the_reopened_file(tmp_path: Path):
    """The fallback when the pool file could not be opened again: the same bytes, made
    durable by the same barriers, read back after a reopen."""
    run_on_msync_path(
        f"""
        import os
        from flexlog.pm.engine import PmEngine

        eng = PmEngine({str(tmp_path)!r}, pool_size_bytes={POOL})
        log = eng._pool.log
        assert log.fd >= 0
        os.close(log.fd)
        log.fd = -1
        payloads = [bytes(8) + os.urandom(n) for n in (100, 5000, 70000)]
        assert eng.prepare_many([(t, 1, p, 1) for t, p in enumerate(payloads)]) == [None] * 3
        eng.commit_many([(t, t) for t in range(3)])
        eng.commit_many([])
        eng.close()
        eng = PmEngine({str(tmp_path)!r})
        for sn, p in enumerate(payloads):
            assert eng.read(1, sn).payload == sn.to_bytes(8, "big") + p[8:]
        eng.close()
        """
    )
