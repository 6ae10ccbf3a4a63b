"""A pool on a normal file system writes back about what it changed (docs/storage.md,
"Page cache"): a store dirties its 4 KiB page, not the large folio around it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

POOL = 256 << 20


def dirtied_per_byte_stored(data_dir: Path, entry: int, per_batch: int, batches: int) -> float:
    """Bytes the engine's process dirtied in the page cache (/proc/self/io write_bytes, which
    counts whole folios) per payload byte, over prepare_many + commit_many of batches of
    per_batch entries; run without PMEM_IS_PMEM_FORCE, so every barrier is an msync."""
    script = textwrap.dedent(
        f"""
        import os
        from flexlog.pm.engine import PmEngine

        def written():
            for line in open("/proc/self/io"):
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])

        eng = PmEngine({str(data_dir)!r}, pool_size_bytes={POOL})
        payload = os.urandom({entry})
        before = written()
        token = sn = 0
        for _ in range({batches}):
            items = [(token + i, 1, payload, 1) for i in range({per_batch})]
            assert eng.prepare_many(items) == [None] * {per_batch}
            eng.commit_many([(token + i, sn + i) for i in range({per_batch})])
            token += {per_batch}
            sn += {per_batch}
        print((written() - before) / ({entry} * {per_batch} * {batches}))
        eng.close()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ratio = float(done.stdout)
    if ratio == 0:
        pytest.skip("this file system accounts no write-back (tmpfs?)")
    return ratio


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
    # Creating the pool zeroes the arena through the mapping, so the page cache held it
    # in large folios: before the pool was re-cached in pages, this was about 8.
    assert 0.9 < dirtied_per_byte_stored(tmp_path, 100 << 10, 4, 150) < 2.0


def test_a_reopened_pool_writes_back_about_what_it_stores(tmp_path: Path):
    dirtied_per_byte_stored(tmp_path, 100 << 10, 4, 150)
    read_through(tmp_path / "pm.pool")
    # Before: about 14.
    assert 0.9 < dirtied_per_byte_stored(tmp_path, 100 << 10, 4, 150) < 2.0



def test_slots_go_through_the_mapping_without_the_reopened_file(tmp_path: Path):
    """The fallback when the pool file could not be opened again: the same bytes, made
    durable by the same barriers, read back after a reopen."""
    script = textwrap.dedent(
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
        eng.close()
        eng = PmEngine({str(tmp_path)!r})
        for sn, p in enumerate(payloads):
            assert eng.read(1, sn).payload[8:] == p[8:]
        eng.close()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr



def test_reopening_zeroes_only_the_free_bytes(tmp_path: Path):
    """Each open zeroes and re-caches the ring past the tail: every committed entry and a
    prepared one survive three opens, the ring wrapping meanwhile."""
    script = textwrap.dedent(
        f"""
        import os
        from flexlog.pm.engine import PmEngine

        kept = {{}}
        token = 0
        pending = None
        for session in range(3):
            eng = PmEngine({str(tmp_path)!r}, pool_size_bytes=8 << 20, ssd_max_bytes=0)
            for sn, payload in kept.items():
                assert eng.read(1, sn).payload[8:] == payload[8:], (session, sn)
            if pending is not None:
                assert eng.prepared_payload(1 << 40)[8:] == pending[8:]
                eng.abort(1 << 40)
            for _ in range(200):
                token += 1
                payload = bytes(8) + os.urandom(20000)
                eng.prepare(token, 1, payload, 1)
                eng.commit(token, token - 1)
                kept[token - 1] = payload
                if token > 40:
                    eng.trim(1, token - 41)
                    del kept[token - 41]
            pending = bytes(8) + os.urandom(3000)
            eng.prepare(1 << 40, 2, pending, 1)
            wrapped = eng._pool.tail > eng._pool.cap
            eng.close()
        assert wrapped
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
