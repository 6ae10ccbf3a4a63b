"""PM -> SSD tiering, the DRAM cache, backpressure and restart."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pm_helpers import batch, run_on_msync_path, tag_of

from flexlog.core.record_batch import with_base_offset
from flexlog.core.storage import StoredEntry, StoreFull
from flexlog.pm._pmem import lib
from flexlog.pm.engine import POOL_FILE, SSD_DIR, PmEngine
from flexlog.pm.pool import Pool, PoolError
from flexlog.pm.segments import CorruptSegment

POOL = 8 << 20


@contextmanager
def opened(path: Path, **kw: Any) -> Iterator[PmEngine]:
    """A small engine that checkpoints early; closed when the block ends, however it ends."""
    kw.setdefault("pool_size_bytes", POOL)
    kw.setdefault("cache_bytes", 64 << 10)
    kw.setdefault("ssd_high_water", 0.5)
    eng = PmEngine(path, **kw)
    try:
        yield eng
    finally:
        eng.close()


def fill(eng: PmEngine, colors: int, per_color: int, size: int) -> dict[tuple[int, int], bytes]:
    """Commit per_color 2-record entries in each color; returns (color, sn) -> payload."""
    stored = {}
    token = 0
    for i in range(per_color):
        for color in range(colors):
            token += 1
            payload = batch(token, 2, size)
            eng.prepare(token, color, payload, 2)
            eng.commit(token, 2 * i)
            stored[(color, 2 * i)] = with_base_offset(payload, 2 * i)
    return stored


def tier_of(eng: PmEngine, color: int, sn: int) -> str:
    idx = eng._colors[color]
    return "pm" if idx.locs[idx.find(sn)] >= 0 else "ssd"


def read_all(eng: PmEngine, colors: int) -> dict[tuple[int, int], bytes]:
    out = {}
    for color in range(colors):
        for entry in eng.read_range(color, 0, 1 << 40):
            out[(color, entry.sn)] = entry.payload
    return out


def test_entries_cross_tiers_and_read_back_identically(shm_dir: Path):
    with opened(shm_dir) as eng:
        stored = fill(eng, colors=3, per_color=400, size=3000)
        stats = eng.stats()
        assert stats["checkpoints"] > 0 and stats["ssd_bytes"] > 0
        assert stats["pm_used_bytes"] <= eng._high_water
        assert read_all(eng, 3) == stored
        for (color, sn), payload in stored.items():
            assert eng.read(color, sn + 1) == StoredEntry(sn, 2, payload)
        hits = eng.stats()["cache_hits"]
        assert eng.read(color, sn) == eng.read(color, sn)
        stats = eng.stats()
        assert stats["cache_hits"] == hits + 2
        assert stats["cache_hits"] > 0 and stats["cache_misses"] > 0
    with opened(shm_dir) as eng:
        assert read_all(eng, 3) == stored


def test_a_commit_leaves_the_cache_to_readers(shm_dir: Path):
    """Commit copies nothing out of PM: the first read of an entry fills the cache."""
    with opened(shm_dir) as eng:
        payload = batch(1, 2, 500)
        eng.prepare(1, 4, payload, 2)
        assert eng.commit(1, 10) == (10, 2)
        assert eng.color_bytes([4])[4][1] == 0
        first = eng.read(4, 11)
        assert first == StoredEntry(10, 2, with_base_offset(payload, 10))
        assert eng.color_bytes([4])[4][1] == len(payload)
        assert (eng.stats()["cache_hits"], eng.stats()["cache_misses"]) == (0, 1)
        assert eng.read(4, 10) == first
        assert (eng.stats()["cache_hits"], eng.stats()["cache_misses"]) == (1, 1)


def test_trim_across_the_tier_boundary_frees_both_tiers(shm_dir: Path):
    with opened(shm_dir) as eng:
        stored = fill(eng, colors=2, per_color=600, size=3000)
        ssd_before, pm_before = eng.stats()["ssd_bytes"], eng.stats()["pm_used_bytes"]
        assert (tier_of(eng, 0, 600), tier_of(eng, 1, 1000)) == ("ssd", "pm")
        eng.trim(0, 600)
        eng.trim(1, 1000)
        assert eng.stats()["ssd_bytes"] < ssd_before
        assert eng.stats()["trims"] == 2
        eng.trim(0, 1000)
        assert eng.stats()["pm_used_bytes"] < pm_before
        expected = {k: v for k, v in stored.items() if k[1] + 2 > 1001}
        assert read_all(eng, 2) == expected
        assert eng.read(0, 1000) is None and eng.read(1, 1000) is None
        assert eng.read(1, 1001).sn == 1000  # the entry straddling the trim point
    with opened(shm_dir) as eng:
        assert read_all(eng, 2) == expected
        assert eng.state(0) == (1001, 1200) and eng.state(1) == (1001, 1200)
        more = fill(eng, colors=2, per_color=10, size=100)
        assert more.keys().isdisjoint(expected)  # SNs restart at 0 in fill: a separate range


def test_store_full_pushes_back_without_damage(shm_dir: Path):
    stored: dict[tuple[int, int], bytes] = {}
    with opened(shm_dir, ssd_max_bytes=1 << 20) as eng:
        with pytest.raises(StoreFull, match="store full") as info:
            for token in range(1, 10_000):
                payload = batch(token, 1, 4000)
                eng.prepare(token, 0, payload, 1)
                eng.commit(token, token)
                stored[(0, token)] = with_base_offset(payload, token)
        assert "SSD tier" in str(info.value)
        assert read_all(eng, 1) == stored
        assert eng.recover().prepared == []
    with opened(shm_dir, ssd_max_bytes=1 << 20) as eng:
        assert read_all(eng, 1) == stored
        eng.trim(0, max(sn for _, sn in stored))
        eng.prepare(1, 0, batch(1), 1)  # room again once the log is trimmed


def test_an_entry_larger_than_the_arena_is_refused(shm_dir: Path):
    with opened(shm_dir) as eng:
        fill(eng, colors=1, per_color=10, size=100)
        with pytest.raises(StoreFull, match="never fit"):
            eng.prepare(1, 0, bytes(POOL), 1)
        assert eng.recover().prepared == []
        assert eng.stats()["checkpoints"] == 0  # no point emptying PM for it


def test_prepared_entries_move_out_of_the_way_of_checkpoints(shm_dir: Path):
    with opened(shm_dir) as eng:
        eng.prepare(10**9, 5, batch(77), 1)  # oldest in the arena, never committed here
        stored = fill(eng, colors=1, per_color=800, size=3000)
        assert eng.stats()["checkpoints"] > 0
        assert eng.recover().prepared == [(10**9, 5, 1)]
    with opened(shm_dir) as eng:
        assert eng.recover().prepared == [(10**9, 5, 1)]
        assert eng.commit(10**9, 0) == (0, 1)
        assert tag_of(eng.read(5, 0).payload) == 77
        assert read_all(eng, 1) == stored


def test_two_copies_of_a_prepared_token_after_a_cut_relocation(shm_dir: Path):
    pool = Pool(shm_dir / POOL_FILE, POOL, 16)
    payload = batch(3)
    first = lib.pm_prepare(pool.log, 3, 1, payload, len(payload), 1)
    lib.pm_prepare(pool.log, 3, 1, payload, len(payload), 1)  # the copy, original not retired
    pool.close()
    with opened(shm_dir) as eng:
        assert eng.recover().prepared == [(3, 1, 1)]
        assert eng.stats()["pm_used_bytes"] < 2 * (first + len(payload) + 128)
        eng.commit(3, 0)
    with opened(shm_dir) as eng:
        assert eng.recover().prepared == []
        assert eng.read(1, 0) is not None


def test_segments_of_an_interrupted_checkpoint_are_dropped(shm_dir: Path):
    with opened(shm_dir) as eng:
        stored = fill(eng, colors=1, per_color=500, size=3000)
        head = eng._pool.head
    ssd = shm_dir / SSD_DIR
    seg = next(ssd.iterdir())
    # What a crash leaves between writing segments and moving the PM head.
    (ssd / f"0-{head + 4096}.seg").write_bytes(seg.read_bytes())
    (ssd / f"0-{head + 8192}.seg.tmp").write_bytes(b"partial")
    with opened(shm_dir) as eng:
        assert read_all(eng, 1) == stored
        assert not any(p.name.startswith(f"0-{head + 4096}") for p in ssd.iterdir())
        assert not any(p.name.endswith(".tmp") for p in ssd.iterdir())


def test_a_damaged_segment_record_is_reported(shm_dir: Path):
    with opened(shm_dir, cache_bytes=0) as eng:
        fill(eng, colors=1, per_color=500, size=3000)
        seg = next((shm_dir / SSD_DIR).iterdir())
        with open(seg, "r+b") as f:
            f.seek(200)
            f.write(b"\xff\xff\xff\xff")
        with pytest.raises(CorruptSegment):
            read_all(eng, 1)


@pytest.mark.slow
def test_msync_path_on_a_normal_file_system(tmp_path: Path):
    """Without PMEM_IS_PMEM_FORCE on a disk file, PMDK persists with msync."""
    run_on_msync_path(
        f"""
        from flexlog.pm.engine import PmEngine
        eng = PmEngine({str(tmp_path)!r}, pool_size_bytes={POOL}, ssd_high_water=0.2)
        payload = bytes(64) + bytes(range(200)) * 10
        for token in range(400):
            eng.prepare(token, 1, payload, 1)
            eng.commit(token, token)
        eng.trim(1, 9)
        assert eng.stats()["checkpoints"] > 0
        eng.close()
        eng = PmEngine({str(tmp_path)!r})
        assert eng.state(1) == (10, 400)
        assert eng.read(1, 399).payload[8:] == payload[8:]
        eng.close()
        """
    )


def test_a_refused_head_move_leaves_no_segments(shm_dir: Path, monkeypatch):
    with opened(shm_dir, ssd_high_water=1.0) as eng:
        stored = fill(eng, colors=2, per_color=50, size=1000)

        class Refusing:
            def __getattr__(self, name: str):
                return getattr(lib, name)

            @staticmethod
            def pm_advance(log, new_head: int) -> int:
                return lib.PM_ESTATE

        with monkeypatch.context() as patch, pytest.raises(PoolError):
            patch.setattr("flexlog.pm.engine.lib", Refusing())
            eng.checkpoint()
        assert not list((shm_dir / SSD_DIR).iterdir())
        assert eng.stats()["ssd_bytes"] == 0
        assert read_all(eng, 2) == stored
        assert eng.checkpoint() > 0 and read_all(eng, 2) == stored
