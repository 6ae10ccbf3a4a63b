"""The C helpers on real pools: layout, commit points, refusals."""

from __future__ import annotations

import runpy
import struct
from pathlib import Path

import pytest
from pm_helpers import batch

from flexlog.core.storage import StoreFull
from flexlog.pm._pmem import ffi, lib
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


COMMITTING = [lib.PM_ST_COMMITTING0, lib.PM_ST_COMMITTING1, lib.PM_ST_COMMITTING2,
              lib.PM_ST_COMMITTING3]


def batch_number(pool: Pool) -> int:
    """The last commit batch's number, from the root's commit word."""
    return pool.root.epoch >> 32


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
    # COMMITTING, tagged with its batch, until the next batch's barrier or a settle.
    assert (h.state, h.sn, h.slot) == (COMMITTING[batch_number(pool) % 4], 1234, 0)
    assert struct.unpack(">q", pool.payload(pos, 8)) == (1234,)
    assert pool.root.n_colors == 1 and pool.log.colors[0].tail == 1235
    assert lib.pm_commit(pool.log, pos, 5, 1, 0) == lib.PM_ESTATE
    lib.pm_settle_commits(pool.log)
    assert pool.header(pos).state == lib.PM_ST_COMMITTED
    assert pool.root.epoch == batch_number(pool) << 32  # the batch is marked whole


def test_a_commit_batch_stays_committing_until_the_next_one(pool: Pool):
    first, second = prepare(pool, 1), prepare(pool, 2)
    assert lib.pm_commit(pool.log, first, 1, 0, 0) == lib.PM_OK
    assert lib.pm_commit(pool.log, second, 2, 1, 0) == lib.PM_OK
    assert pool.header(first).state == lib.PM_ST_COMMITTED
    assert pool.header(second).state == COMMITTING[batch_number(pool) % 4]
    assert pool.root.epoch & 0xFFFFFFFF != 0  # the latest batch's check


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
    with pytest.raises(StoreFull, match="per-color table is full"):
        check(lib.pm_trim(pool.log, 4, 104, 1), "trim")


def test_abort_and_trim_reclaim_the_head(pool: Pool):
    a, b = prepare(pool, 1), prepare(pool, 2)
    assert lib.pm_commit(pool.log, b, 2, 0, 0) == lib.PM_OK
    assert lib.pm_abort(pool.log, a, 1) == lib.PM_OK
    assert pool.header(a).state == ST_ABORTED
    assert pool.head == b
    assert lib.pm_trim(pool.log, 0, 1, 1) == lib.PM_OK
    assert pool.head == b  # still COMMITTING: not reclaimed before it is settled
    lib.pm_settle_commits(pool.log)
    assert lib.pm_trim(pool.log, 0, 1, 1) == lib.PM_OK
    assert pool.head == pool.tail
    assert lib.pm_abort(pool.log, a, 1) == lib.PM_ESTATE


def test_advance_never_drops_a_prepared_entry_or_splits_one(pool: Pool):
    a = prepare(pool, 1)
    b = prepare(pool, 2)
    assert lib.pm_commit(pool.log, a, 1, 0, 0) == lib.PM_OK
    assert lib.pm_advance(pool.log, b) == lib.PM_ESTATE  # a is COMMITTING until settled
    lib.pm_settle_commits(pool.log)
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
        lib.pm_settle_commits(pool.log)
        second = prepare(pool, 2)
        pool.buf[second + 40 : second + 44] = struct.pack("<I", 0)  # pm_entry.size
        assert lib.pm_advance(pool.log, pool.tail) == lib.PM_ERANGE
        with pytest.raises(PoolError, match="damaged"):
            pool.scan()
    finally:
        pool.close()


def prepare_many(pool: Pool, rows: list[tuple[int, int, bytes]]) -> list[int]:
    out = ffi.new("int64_t[]", len(rows))
    lib.pm_prepare_many(pool.log, len(rows), [r[0] for r in rows], [r[1] for r in rows],
                        [ffi.from_buffer(r[2]) for r in rows], [len(r[2]) for r in rows],
                        [1] * len(rows), out)
    return list(out)


def commit_many(pool: Pool, rows: list[tuple[int, int, int, int]]) -> list[int]:
    """rows: (position, token, sn, color slot)."""
    out = ffi.new("int32_t[]", len(rows))
    lib.pm_commit_many(pool.log, len(rows), *([r[i] for r in rows] for i in range(4)), out)
    return list(out)


def test_prepare_many_publishes_the_batch_with_one_tail_move(pool: Pool):
    rows = [(t, 1 + t % 2, batch(t, size=20 * t)) for t in range(1, 6)]
    positions = prepare_many(pool, rows)
    assert positions[0] == 0 and positions == sorted(positions)
    assert pool.tail == positions[-1] + slot_bytes(len(rows[-1][2]))
    for (token, color, payload), pos in zip(rows, positions, strict=True):
        h = pool.header(pos)
        assert (h.state, h.token, h.color, h.length) == (lib.PM_ST_PREPARED, token, color,
                                                        len(payload))
        assert pool.payload(pos, len(payload)) == payload


def test_prepare_many_skips_what_does_not_fit_and_stores_the_rest(pool: Pool):
    big, small = bytes(pool.cap // 2), batch(3)
    positions = prepare_many(pool, [(1, 1, big), (2, 1, big), (3, 1, small), (4, 1, bytes(8))])
    assert positions[1] == lib.PM_EFULL
    assert positions[0] == 0 and positions[2] > 0 and positions[3] > positions[2]
    assert pool.tail == positions[3] + slot_bytes(8)
    assert prepare_many(pool, [(5, 1, big)]) == [lib.PM_EFULL]
    assert pool.tail == positions[3] + slot_bytes(8)


def test_commit_many_commits_the_batch_and_reports_each_refusal(pool: Pool):
    positions = prepare_many(pool, [(t, 1 if t < 3 else 2, batch(t)) for t in range(1, 5)])
    number = batch_number(pool)
    status = commit_many(pool, [
        (positions[0], 1, 10, 0),  # claims slot 0 for color 1
        (positions[1], 99, 11, 0),  # wrong token
        (positions[2], 3, 0, 1),  # claims slot 1 for color 2
        (positions[3], 4, 1, 0),  # slot 0 belongs to color 1
        (positions[0], 1, 12, 0),  # already committed in this batch
    ])
    assert status == [lib.PM_OK, lib.PM_ESTATE, lib.PM_OK, lib.PM_ECOLOR, lib.PM_ESTATE]
    assert batch_number(pool) == number + 1 and pool.root.n_colors == 2
    lib.pm_settle_commits(pool.log)
    h = pool.header(positions[0])
    assert (h.state, h.sn, h.slot) == (lib.PM_ST_COMMITTED, 10, 0)
    assert struct.unpack(">q", pool.payload(positions[0], 8)) == (10,)
    assert pool.header(positions[2]).state == lib.PM_ST_COMMITTED
    for pos in positions[1], positions[3]:
        assert pool.header(pos).state == lib.PM_ST_PREPARED
    assert [(c, t) for _, c, _, t in pool.colors()] == [(1, 11), (2, 1)]
    assert commit_many(pool, [(positions[1], 99, 0, 0)]) == [lib.PM_ESTATE]
    assert batch_number(pool) == number + 1  # nothing committed, no new batch


