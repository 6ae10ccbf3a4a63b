"""What a power loss can leave of a pool on a file: everything up to the last completed
barrier, plus any subset of the writes after it, which reach the media in no set order.

Each test makes the writes with the real C calls, keeps the bytes the media could hold
(headers as one batch left them, the commit word, the tail), lets the pool close, writes
those bytes back into the closed pool, and opens it again: what open makes of them is
what a replica would find after the power came back.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pm_helpers import batch

from flexlog.pm._pmem import ffi, lib
from flexlog.pm.pool import ENTRY_HDR, Pool, slot_bytes

POOL = 8 << 20
STATE, SN, HEADER_AND_BASE_OFFSET = slice(0, 8), slice(24, 32), ENTRY_HDR + 8
Image = dict[int, bytes]  # position -> the entry's header and baseOffset bytes


def prepare_many(pool: Pool, tokens: list[int]) -> list[int]:
    out = ffi.new("int64_t[]", len(tokens))
    payloads = [batch(t) for t in tokens]
    lib.pm_prepare_many(pool.log, len(tokens), tokens, [1] * len(tokens),
                        [ffi.from_buffer(p) for p in payloads], [len(p) for p in payloads],
                        [1] * len(tokens), out)
    assert min(out) >= 0
    return list(out)


def commit_many(pool: Pool, rows: list[tuple[int, int, int]]) -> None:
    """rows: (position, token, sn), all of color 1 in slot 0."""
    out = ffi.new("int32_t[]", len(rows))
    lib.pm_commit_many(pool.log, len(rows), [r[0] for r in rows], [r[1] for r in rows],
                       [r[2] for r in rows], [0] * len(rows), out)
    assert list(out) == [lib.PM_OK] * len(rows)


def in_order(positions: list[int], first_sn: int) -> list[tuple[int, int, int]]:
    """Commit rows for entries prepared with tokens 1, 2, ...: consecutive SNs from first_sn."""
    return [(pos, i + 1, first_sn + i) for i, pos in enumerate(positions)]


def image(pool: Pool, positions: list[int]) -> Image:
    return {pos: pool.buf[pos : pos + HEADER_AND_BASE_OFFSET] for pos in positions}


def end_session(pool: Pool) -> int:
    """Close pool; its generation, which slots written in it carry."""
    generation = pool.root.generation
    pool.close()
    return generation


@contextmanager
def after_crash(path: Path, writer: int, headers: Image, epoch: int | None = None,
                tail: int | None = None, arena: dict[int, bytes] | None = None) -> Iterator[Pool]:
    """Write the bytes the media kept into the closed pool at path, then open it as after a crash
    (the first open since the session of generation writer that wrote them), and close it after."""
    raw = Pool(path, POOL, 4)
    for pos, data in (headers | (arena or {})).items():
        raw.buf[pos : pos + len(data)] = data
    if epoch is not None:
        raw.root.epoch = epoch
    if tail is not None:
        raw.root.tail = tail
    raw.root.generation = writer  # this open is not a session: the next open follows the writer's
    raw.close()  # opened with nothing pending: the close writes nothing of its own
    with reopened(path) as pool:
        yield pool


@contextmanager
def reopened(path: Path) -> Iterator[Pool]:
    pool = Pool(path, POOL, 4)
    try:
        yield pool
    finally:
        pool.close()


def states(pool: Pool, positions: list[int]) -> list[int]:
    return [pool.header(pos).state for pos in positions]


@pytest.fixture
def path(shm_dir: Path) -> Path:
    return shm_dir / "pm.pool"


def test_a_whole_batch_whose_flips_never_landed_is_committed(path: Path):
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    commit_many(pool, in_order(positions, 0))
    cut, word = image(pool, positions), pool.root.epoch
    writer = end_session(pool)
    with after_crash(path, writer, cut, epoch=word) as pool:
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 3
        runs, prepared = pool.scan()
        assert list(runs[0][0]) == [0, 1, 2] and prepared == []
        assert pool.root.epoch == word >> 32 << 32  # settled: the batch is known whole


@pytest.mark.parametrize("lost", ["state", "sn", "base offset"])
def test_a_batch_missing_any_write_goes_back_to_prepared_whole(path: Path, lost: str):
    """The commit word landed, one write of one entry did not: no SN of the batch may stay."""
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    before = image(pool, positions)
    commit_many(pool, in_order(positions, 10))
    cut, word = image(pool, positions), pool.root.epoch
    writer = end_session(pool)
    torn = bytearray(cut[positions[1]])
    if lost == "base offset":
        torn[ENTRY_HDR:] = before[positions[1]][ENTRY_HDR:]
    else:
        field = STATE if lost == "state" else SN
        torn[field] = before[positions[1]][field]
    cut[positions[1]] = bytes(torn)
    with after_crash(path, writer, cut, epoch=word) as pool:
        assert states(pool, positions) == [lib.PM_ST_PREPARED] * 3
        runs, prepared = pool.scan()
        assert runs == {} and prepared == positions
        # Committed again later, as the replica does, with the SNs rewritten.
        commit_many(pool, in_order(positions, 20))
        assert struct.unpack(">q", pool.payload(positions[2], 8)) == (22,)


def test_a_batch_whose_word_never_landed_stays_prepared_and_the_one_before_is_kept(path: Path):
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3, 4])
    commit_many(pool, [(positions[0], 1, 0), (positions[1], 2, 1)])
    first, first_word = image(pool, positions[:2]), pool.root.epoch
    commit_many(pool, [(positions[2], 3, 2), (positions[3], 4, 3)])
    second, second_word = image(pool, positions[2:]), pool.root.epoch
    writer = end_session(pool)
    # The first batch's flips to COMMITTED lag; the second batch's word is either there or not.
    with after_crash(path, writer, first | second, epoch=first_word) as pool:
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 2 + [lib.PM_ST_PREPARED] * 2
        writer = pool.root.generation
    with after_crash(path, writer, first | second, epoch=second_word) as pool:
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 4
        runs, _ = pool.scan()
        assert list(runs[0][0]) == [0, 1, 2, 3]


def test_slots_past_a_lagging_tail_are_found_by_their_checks(path: Path):
    pool = Pool(path, POOL, 4)
    first = prepare_many(pool, [1])
    rest = prepare_many(pool, [2, 3])
    tail = pool.tail
    writer = end_session(pool)
    with after_crash(path, writer, {}, tail=first[0] + slot_bytes(len(batch(1)))) as pool:
        assert pool.tail == tail
        _, prepared = pool.scan()
        assert prepared == first + rest


@pytest.mark.parametrize("damage", ["none", "torn payload", "older lap", "garbage"])
def test_the_walk_past_the_tail_stops_at_the_first_slot_that_is_not_whole(path: Path, damage: str):
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    slot = slot_bytes(len(batch(1)))
    second = positions[1]
    last = second + ENTRY_HDR + len(batch(2)) - 1
    arena = {
        "none": {},
        "torn payload": {last: bytes([pool.buf[last][0] ^ 1])},
        # The first slot's bytes where the second one is: right but for its position.
        "older lap": {second: pool.buf[positions[0] : positions[0] + slot]},
        "garbage": {second: bytes(range(256)) * (slot // 256) + bytes(slot % 256)},
    }[damage]
    writer = end_session(pool)
    with after_crash(path, writer, {}, tail=second, arena=arena) as pool:
        kept = 3 if damage == "none" else 1
        assert pool.tail == (positions[2] + slot if kept == 3 else second)
        _, prepared = pool.scan()
        assert prepared == positions[:kept]


def test_a_changed_base_offset_does_not_fail_the_slot_check(path: Path):
    """Commit rewrites baseOffset in place: the check leaves those 8 bytes out."""
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2])
    writer = end_session(pool)
    with after_crash(path, writer, {}, tail=positions[1],
                     arena={positions[1] + ENTRY_HDR: struct.pack(">q", 77)}) as pool:
        assert pool.tail == positions[1] + slot_bytes(len(batch(2)))


def test_padding_past_a_lagging_tail_is_found_too(path: Path):
    pool = Pool(path, POOL, 4)
    payload = bytes(100_000)
    positions = []
    while (rc := lib.pm_prepare(pool.log, len(positions), 1, payload, len(payload), 1)) >= 0:
        positions.append(rc)
    for token, pos in enumerate(positions[:2]):
        assert lib.pm_abort(pool.log, pos, token) == lib.PM_OK
    pad = positions[-1] + slot_bytes(len(payload))
    wrapped = lib.pm_prepare(pool.log, 99, 1, payload, len(payload), 1)
    assert wrapped > pad and wrapped % pool.cap == 0
    tail = pool.tail
    writer = end_session(pool)
    with after_crash(path, writer, {}, tail=pad) as pool:
        assert pool.tail == tail
        assert pool.header(wrapped).token == 99


def test_a_version_1_pool_is_settled_by_the_epoch_parity_and_upgraded(path: Path):
    """A pool written before slot checks, cut inside a commit batch (tags by the epoch's parity)."""
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    commit_many(pool, [(positions[0], 1, 0)])
    pool.close()
    raw = Pool(path, POOL, 4)
    raw.root.version, raw.root.epoch = 1, 7
    for pos, sn, tag in (positions[1], 1, lib.PM_ST_COMMITTING1), (positions[2], 2, lib.PM_ST_COMMITTING0):
        raw.buf[pos + 24 : pos + 32] = struct.pack("<Q", sn)
        raw.buf[pos + 44 : pos + 48] = struct.pack("<I", 0)
        raw.buf[pos : pos + 8] = struct.pack("<Q", tag)
    raw.close()
    with reopened(path) as pool:
        # Epoch 7 is odd: the COMMITTING1 entry reached its commit point, the COMMITTING0 one did not.
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 2 + [lib.PM_ST_PREPARED]
        assert (pool.root.version, pool.root.epoch) == (2, 0)
        commit_many(pool, [(positions[2], 3, 2)])
        assert pool.root.epoch >> 32 == 1


def test_a_slot_an_earlier_crash_left_past_the_tail_is_never_taken_up(path: Path):
    """Of one prepare_many, the second slot reached the media and the first did not. Open stops
    at the first; a retry lands there later and the log grows up to the orphan, which must
    stay out: it belongs to a session before the retry's."""
    pool = Pool(path, POOL, 4)
    first, orphan = prepare_many(pool, [1, 2])
    last = first + ENTRY_HDR + len(batch(1)) - 1
    torn = {last: bytes([pool.buf[last][0] ^ 1])}
    writer = end_session(pool)
    with after_crash(path, writer, {}, tail=first, arena=torn) as pool:
        assert pool.tail == first
        retry = lib.pm_prepare(pool.log, 2, 1, batch(2), len(batch(2)), 1)
        assert retry == first and pool.tail == orphan
        commit_many(pool, [(retry, 2, 0)])
        writer = pool.root.generation
    with after_crash(path, writer, {}, tail=orphan) as pool:  # or a clean close: the tail is the same
        assert pool.tail == orphan
        runs, prepared = pool.scan()
        assert list(runs[0][0]) == [0] and prepared == []


def test_a_committed_state_word_past_the_tail_is_an_older_lap_not_a_commit(path: Path):
    """On PM a header tears at 8 bytes: the new slot's checked words landed, its state and SN
    words are an older lap's. No flip to COMMITTED ever precedes the tail over it."""
    pool = Pool(path, POOL, 4)
    (first,) = prepare_many(pool, [1])
    commit_many(pool, [(first, 1, 0)])
    (second,) = prepare_many(pool, [2])
    writer = end_session(pool)
    stale = {second: struct.pack("<Q", lib.PM_ST_COMMITTED), second + 24: struct.pack("<Q", 41)}
    with after_crash(path, writer, {}, tail=second, arena=stale) as pool:
        assert pool.tail == second
        runs, prepared = pool.scan()
        assert list(runs[0][0]) == [0] and prepared == []


def test_a_commit_past_a_lagging_tail_is_found_and_settled(path: Path):
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2])
    commit_many(pool, in_order(positions, 0))
    cut, word = image(pool, positions), pool.root.epoch
    writer = end_session(pool)
    with after_crash(path, writer, cut, epoch=word, tail=positions[0]) as pool:
        assert pool.tail == positions[1] + slot_bytes(len(batch(2)))
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 2


def test_entries_two_batches_behind_the_word_are_committed(path: Path):
    """Word B, its barrier done; B-1's flips made after it, B-2's still on the way."""
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    tagged = []
    for sn, pos in enumerate(positions):
        commit_many(pool, [(pos, sn + 1, sn)])
        tagged.append(image(pool, [pos]))
    word = pool.root.epoch
    writer = end_session(pool)
    with after_crash(path, writer, tagged[0] | tagged[1] | tagged[2], epoch=word) as pool:
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 3


def test_a_settle_cut_after_marking_the_batch_whole_finishes_its_flips(path: Path):
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    commit_many(pool, in_order(positions, 0))
    cut, word = image(pool, positions), pool.root.epoch
    writer = end_session(pool)
    flipped = bytearray(cut[positions[0]])
    flipped[STATE] = struct.pack("<Q", lib.PM_ST_COMMITTED)
    cut[positions[0]] = bytes(flipped)
    with after_crash(path, writer, cut, epoch=word >> 32 << 32) as pool:  # word whole, one flip done
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 3


def test_batch_numbers_wrap_past_32_bits(path: Path):
    pool = Pool(path, POOL, 4)
    positions = prepare_many(pool, [1, 2, 3])
    writer = end_session(pool)
    with after_crash(path, writer, {}, epoch=0xFFFFFFFF << 32) as pool:
        commit_many(pool, [(positions[0], 1, 0)])  # batch 0xFFFFFFFF + 1 = 0
        assert pool.root.epoch >> 32 == 0
        commit_many(pool, [(positions[1], 2, 1), (positions[2], 3, 2)])
        cut, word = image(pool, positions), pool.root.epoch
        writer = pool.root.generation
    with after_crash(path, writer, cut, epoch=word) as pool:
        assert states(pool, positions) == [lib.PM_ST_COMMITTED] * 3
