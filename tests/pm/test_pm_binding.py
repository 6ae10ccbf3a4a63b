"""The C helpers on real pools: layout, commit points, refusals."""

from __future__ import annotations

import runpy
import struct
from pathlib import Path

import pytest
from pm_helpers import batch

from flexlog.core.storage import StoreFull
from flexlog.pm._pmem import lib
from flexlog.pm.pool import ENTRY_HDR, Pool, PoolError, check, slot_bytes

POOL = 8 << 20
ST_ABORTED = 0x464C580000000003
ST_PAD = 0x464C580000000004
ST_RELOCATED = 0x464C580000000005


@pytest.fixture
def pool(shm_dir: Path):
    p = Pool(shm_dir / "pm.pool", POOL, 4)
    yield p
    p.close()


def prepare(pool: Pool, token: int, color: int = 1, payload: bytes | None = None) -> int:
    payload = payload if payload is not None else batch(token)
    return check(lib.pm_prepare(pool.log, token, color, payload, len(payload), 1), "prepare")


def test_create_is_atomic_and_sized(shm_dir: Path):
    pool = Pool(shm_dir / "pm.pool", POOL, 4)
    try:
        assert sorted(p.name for p in shm_dir.iterdir()) == ["pm.pool"]
        assert 0 < pool.cap <= POOL and pool.cap % 64 == 0
        assert (pool.head, pool.tail, pool.root.n_colors) == (0, 0, 0)
    finally:
        pool.close()


def test_prepare_publishes_the_entry_by_moving_the_tail(pool: Pool):
    payload = batch(5)
    pos = prepare(pool, 5, color=3, payload=payload)
    h = pool.header(pos)
    assert (pos, pool.tail) == (0, slot_bytes(len(payload)))
    assert (h.state, h.token, h.color, h.length) == (lib.PM_ST_PREPARED, 5, 3, len(payload))
    assert pool.payload(pos, h.length) == payload


def test_commit_writes_sn_into_header_and_base_offset(pool: Pool):
    pos = prepare(pool, 5)
    assert lib.pm_commit(pool.log, pos, 5, 1234, 0) == lib.PM_OK
    h = pool.header(pos)
    assert (h.state, h.sn, h.slot) == (lib.PM_ST_COMMITTED, 1234, 0)
    assert struct.unpack(">q", pool.payload(pos, 8)) == (1234,)
    assert pool.root.n_colors == 1 and pool.log.colors[0].tail == 1235
    assert lib.pm_commit(pool.log, pos, 5, 1, 0) == lib.PM_ESTATE


def test_commit_refuses_a_wrong_token_or_color_slot(pool: Pool):
    pos = prepare(pool, 5, color=1)
    assert lib.pm_commit(pool.log, pos, 6, 0, 0) == lib.PM_ESTATE
    assert lib.pm_commit(pool.log, pos, 5, 0, 3) == lib.PM_ECOLOR  # not the next free slot
    other = prepare(pool, 6, color=2)
    assert lib.pm_commit(pool.log, other, 6, 0, 0) == lib.PM_OK
    assert lib.pm_commit(pool.log, pos, 5, 0, 0) == lib.PM_ECOLOR  # slot 0 is color 2


def test_color_table_full(pool: Pool):
    for slot in range(4):
        assert lib.pm_trim(pool.log, slot, 100 + slot, 1) == lib.PM_OK
    assert lib.pm_trim(pool.log, 4, 104, 1) == lib.PM_ECOLOR
    with pytest.raises(StoreFull, match="max_colors"):
        check(lib.pm_trim(pool.log, 4, 104, 1), "trim")


def test_abort_and_trim_reclaim_the_head(pool: Pool):
    a, b = prepare(pool, 1), prepare(pool, 2)
    assert lib.pm_commit(pool.log, b, 2, 0, 0) == lib.PM_OK
    assert lib.pm_abort(pool.log, a, 1) == lib.PM_OK
    assert pool.header(a).state == ST_ABORTED
    assert pool.head == b
    assert lib.pm_trim(pool.log, 0, 1, 1) == lib.PM_OK
    assert pool.head == pool.tail
    assert lib.pm_abort(pool.log, a, 1) == lib.PM_ESTATE


def test_advance_never_drops_a_prepared_entry_or_splits_one(pool: Pool):
    a = prepare(pool, 1)
    b = prepare(pool, 2)
    assert lib.pm_commit(pool.log, a, 1, 0, 0) == lib.PM_OK
    assert lib.pm_advance(pool.log, pool.tail) == lib.PM_ESTATE
    assert lib.pm_advance(pool.log, b + 64) == lib.PM_ESTATE
    assert lib.pm_advance(pool.log, a + 64) == lib.PM_ERANGE
    assert lib.pm_advance(pool.log, pool.tail + 64) == lib.PM_ERANGE
    assert lib.pm_advance(pool.log, b) == lib.PM_OK
    assert pool.head == b


def test_relocate_copies_to_the_tail_then_retires_the_original(pool: Pool):
    payload = batch(1)
    a = prepare(pool, 1, payload=payload)
    moved = lib.pm_relocate(pool.log, a)
    assert moved == slot_bytes(len(payload))
    assert pool.header(a).state == ST_RELOCATED
    assert pool.header(moved).token == 1 and pool.payload(moved, len(payload)) == payload
    assert lib.pm_advance(pool.log, moved) == lib.PM_OK
    assert lib.pm_relocate(pool.log, a) == lib.PM_ESTATE


def test_full_arena_and_wrap_with_padding(pool: Pool):
    payload = bytes(100_000)
    size = slot_bytes(len(payload))
    positions = []
    while (rc := lib.pm_prepare(pool.log, len(positions), 1, payload, len(payload), 1)) >= 0:
        positions.append(rc)
    assert rc == lib.PM_EFULL
    assert pool.cap - pool.used < size
    for token, pos in enumerate(positions[:2]):
        assert lib.pm_abort(pool.log, pos, token) == lib.PM_OK
    wrapped = check(lib.pm_prepare(pool.log, 99, 1, payload, len(payload), 1), "prepare")
    assert wrapped % pool.cap == 0  # the ring's leftover end became padding
    assert pool.header(positions[-1] + size).state == ST_PAD
    assert pool.payload(wrapped, len(payload)) == payload
    assert lib.pm_prepare(pool.log, 100, 1, bytes(pool.cap), pool.cap, 1) == lib.PM_EFULL


def test_entry_header_is_one_cache_line():
    assert ENTRY_HDR == 64


def test_open_refuses_a_foreign_file_a_second_opener_and_a_tiny_pool(shm_dir: Path, pool):
    junk = shm_dir / "junk.pool"
    junk.write_bytes(b"x" * 4096)
    with pytest.raises(PoolError):
        Pool(junk, POOL, 4)
    with pytest.raises(PoolError):
        Pool(shm_dir / "pm.pool", POOL, 4)
    with pytest.raises(ValueError, match="at least"):
        Pool(shm_dir / "small.pool", 1 << 20, 4)


def test_build_without_libpmemobj_says_what_to_install(monkeypatch):
    real_is_file = Path.is_file
    monkeypatch.setattr(
        Path, "is_file", lambda self: self.name != "libpmemobj.h" and real_is_file(self)
    )
    script = Path(__file__).parents[2] / "pm" / "_build_pmem.py"
    with pytest.raises(RuntimeError, match="apt-get install libpmemobj-dev"):
        runpy.run_path(str(script))


def test_a_damaged_slot_size_is_refused_not_walked(shm_dir: Path):
    pool = Pool(shm_dir / "pm.pool", POOL, 4)
    try:
        assert lib.pm_commit(pool.log, prepare(pool, 1), 1, 0, 0) == lib.PM_OK
        second = prepare(pool, 2)
        pool.buf[second + 40 : second + 44] = struct.pack("<I", 0)  # pm_entry.size
        assert lib.pm_advance(pool.log, pool.tail) == lib.PM_ERANGE
        with pytest.raises(PoolError, match="damaged"):
            pool.scan()
    finally:
        pool.close()
