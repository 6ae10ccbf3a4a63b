"""The same behavioural checks against MemoryEngine and PmEngine, so the two agree."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pm_helpers import batch

from flexlog.core import record_batch
from flexlog.core.memory_engine import MemoryEngine
from flexlog.core.storage import (
    COMMON_STATS,
    RECOVERED_TOKENS_PER_COLOR,
    Committed,
    StorageEngine,
    StoreFull,
    UnknownToken,
)
from flexlog.pm.engine import PmEngine

SMALL_POOL = 8 << 20


@pytest.fixture(params=["memory", "pm-shm", "pm-disk"])
def engine(request, tmp_path) -> Iterator[StorageEngine]:
    if request.param == "memory":
        # As small as the PM pools, so all three refuse the same oversized entry.
        eng: StorageEngine = MemoryEngine(capacity_bytes=SMALL_POOL)
    elif request.param == "pm-shm":
        eng = PmEngine(request.getfixturevalue("shm_dir"), pool_size_bytes=SMALL_POOL)
    else:
        eng = PmEngine(tmp_path, pool_size_bytes=SMALL_POOL)
    yield eng
    eng.close()


def append(eng: StorageEngine, token: int, color: int, sn: int, records: int = 1) -> bytes:
    payload = batch(token, records)
    eng.prepare(token, color, payload, records)
    eng.commit(token, sn)
    return payload


def test_commit_rewrites_base_offset_only(engine):
    payload = batch(1, records=3)
    engine.prepare(1, 5, payload, 3)
    committed = engine.commit(1, 10)
    assert (committed.sn, committed.count, committed.end) == (10, 3, 13)
    entry = engine.read(5, 10)
    assert (entry.sn, entry.count, entry.end) == (10, 3, 13)
    assert struct.unpack(">q", entry.payload[:8]) == (10,)
    assert entry.payload[8:] == payload[8:]
    assert record_batch.validate(entry.payload).base_offset == 10
    for sn in (10, 11, 12):
        assert engine.read(5, sn) == entry
    assert engine.read(5, 13) is None
    assert engine.read(5, 9) is None
    assert engine.state(5) == (0, 13)


def test_recover_reports_the_tokens_of_each_colors_latest_entries(engine):
    """A restarted replica tells a restarted leaf which SN these appends already have."""
    n = RECOVERED_TOKENS_PER_COLOR + 3
    for i in range(n):
        append(engine, 1000 + i, 4, 2 * i, records=2)
    append(engine, 7, 9, 0)
    engine.prepare(8, 9, batch(8), 1)  # prepared only: not a committed token
    recent = sorted(engine.recover().recent)
    assert recent[0] == (7, 9, 0, 1)
    assert recent[1:] == [(1000 + i, 4, 2 * i, 2) for i in range(3, n)]


def test_prepared_entry_is_not_readable(engine):
    engine.prepare(7, 1, batch(7), 1)
    assert engine.read(1, 0) is None
    assert engine.read_range(1, 0, 1 << 20) == []
    assert engine.state(1) == (0, 0)
    assert [p.token for p in engine.recover().prepared] == [7]


def test_second_prepare_of_a_token_is_a_noop(engine):
    first = batch(1)
    engine.prepare(1, 1, first, 1)
    engine.prepare(1, 1, batch(2, records=2), 2)
    assert engine.commit(1, 0).count == 1
    assert engine.read(1, 0).payload[8:] == first[8:]


def test_retry_of_a_prepared_token_is_never_refused_for_space(engine):
    """A replica re-prepares a token when a client re-sends: it needs no room, so a full store takes it."""
    first = batch(1, size=256 << 10)
    engine.prepare(1, 1, first, 1)
    with pytest.raises(StoreFull):
        for token in range(2, 100):
            engine.prepare(token, 1, batch(token, size=256 << 10), 1)
    engine.prepare(1, 1, first, 1)
    results = engine.prepare_many([(1, 1, first, 1), (1000, 1, batch(1000, size=256 << 10), 1)])
    assert results[0] is None and isinstance(results[1], StoreFull)
    engine.commit(1, 0)
    assert engine.read(1, 0).payload[8:] == first[8:]


def test_stats_has_the_common_keys(engine):
    before = engine.stats()
    assert set(COMMON_STATS) <= before.keys()
    engine.prepare(1, 1, batch(1, size=4000), 1)
    after = engine.stats()
    assert after["store_used_bytes"] > before["store_used_bytes"]
    assert (after["store_used_bytes"] + after["store_free_bytes"]
            == before["store_used_bytes"] + before["store_free_bytes"])


def stored_bytes(eng: StorageEngine, color: int) -> int:
    """A color's bytes over the tiers that hold entries (the DRAM cache holds copies)."""
    sizes = eng.color_bytes([color])[color]
    return sum(n for tier, n in zip(eng.tiers(), sizes, strict=True) if tier.name != "cache")


def test_tiers_and_color_bytes(engine):
    tiers = engine.tiers()
    assert tiers[0].name in ("memory", "pm") and tiers[0].capacity_bytes > 0
    assert all(t.path == "" or Path(t.path.removeprefix("dram:")).is_absolute() for t in tiers)
    kept = [append(engine, 1 + i, 7, 10 * i, records=10) for i in range(3)]
    append(engine, 9, 8, 0)
    engine.trim(7, 9)  # the first entry goes
    assert stored_bytes(engine, 7) == sum(len(p) for p in kept[1:])
    assert engine.color_bytes([99]) == {99: [0] * len(tiers)}
    assert engine.tiers()[0].used_bytes > tiers[0].used_bytes


def test_pm_color_bytes_follow_entries_to_ssd_and_cache(shm_dir: Path):
    with_cache = PmEngine(shm_dir, pool_size_bytes=SMALL_POOL, cache_bytes=1 << 20)
    try:
        payloads = [append(with_cache, 1 + i, 3, i) for i in range(4)]
        assert with_cache.color_bytes([3])[3][1] == 0  # commits leave the cache to readers
        assert all(with_cache.read(3, i) for i in range(4))
        with_cache.checkpoint()  # every committed entry moves to SSD
        pm, cache, ssd = with_cache.color_bytes([3])[3]
        assert (pm, ssd) == (0, sum(len(p) for p in payloads))
        assert cache == ssd  # reads filled the cache; the move to SSD keeps the copies
        assert [t.name for t in with_cache.tiers()] == ["pm", "cache", "ssd"]
        assert with_cache.tiers()[2].used_bytes >= ssd
    finally:
        with_cache.close()


def test_commit_of_unknown_or_committed_token_raises(engine):
    with pytest.raises(UnknownToken):
        engine.commit(99, 0)
    append(engine, 1, 1, 0)
    with pytest.raises(UnknownToken):
        engine.commit(1, 1)


def test_abort_forgets_the_entry(engine):
    engine.prepare(1, 1, batch(1), 1)
    engine.abort(1)
    engine.abort(1)
    engine.abort(12345)
    with pytest.raises(UnknownToken):
        engine.commit(1, 0)
    assert engine.recover().prepared == []


def test_a_prepared_payload_reads_back_until_commit_or_abort(engine):
    payload = struct.pack(">QQ", 4, 6)  # what a replica's seal keeps
    engine.prepare(7, 3, payload, 1)
    assert engine.prepared_payload(7) == payload
    engine.abort(7)
    with pytest.raises(UnknownToken):
        engine.prepared_payload(7)


def test_read_range_budget_and_first_entry_over_budget(engine):
    payloads = [append(engine, t, 2, sn, records=2) for t, sn in ((1, 0), (2, 2), (3, 4))]
    size = len(payloads[0])
    assert [e.sn for e in engine.read_range(2, 0, 1)] == [0]
    assert [e.sn for e in engine.read_range(2, 0, 2 * size)] == [0, 2]
    assert [e.sn for e in engine.read_range(2, 3, 1 << 20)] == [2, 4]
    assert [e.sn for e in engine.read_range(2, 5, 0)] == [4]
    assert engine.read_range(2, 6, 1 << 20) == []
    assert engine.read_range(3, 0, 1 << 20) == []


def test_trim_keeps_a_straddling_entry(engine):
    for t, sn, n in ((1, 0, 3), (2, 3, 2), (3, 5, 1)):
        append(engine, t, 4, sn, records=n)
    engine.trim(4, 3)
    assert engine.state(4) == (4, 6)
    assert engine.read(4, 3) is None
    assert engine.read(4, 4).sn == 3
    assert [e.sn for e in engine.read_range(4, 0, 1 << 20)] == [3, 5]
    engine.trim(4, 1)
    assert engine.state(4) == (4, 6)
    engine.trim(4, 10)
    assert engine.state(4) == (11, 11)
    assert engine.read_range(4, 0, 1 << 20) == []


def test_trim_of_an_unknown_color_sets_its_state(engine):
    engine.trim(9, 4)
    assert engine.state(9) == (5, 5)
    assert engine.recover().colors[9] == (5, 5)


def test_out_of_order_commits_read_in_sn_order(engine):
    engine.prepare(1, 3, batch(1), 1)
    engine.prepare(2, 3, batch(2), 1)
    engine.commit(2, 1)
    assert engine.read(3, 0) is None
    engine.commit(1, 0)
    assert [e.sn for e in engine.read_range(3, 0, 1 << 20)] == [0, 1]


def test_colors_are_independent(engine):
    append(engine, 1, 1, 0)
    append(engine, 2, 2, 0)
    engine.trim(1, 0)
    assert engine.read(2, 0) is not None
    assert engine.recover().colors == {1: (1, 1), 2: (0, 1)}


def _outcome(result: object) -> object:
    """A batch result in comparable form: exceptions by type and arguments."""
    if isinstance(result, Exception):
        return type(result).__name__, result.args if isinstance(result, UnknownToken) else ()
    return result


def _batch_workload(seed: int) -> Iterator[tuple[str, list]]:
    """Prepare and commit batches of random sizes, with duplicates and unknown tokens mixed in."""
    rng = random.Random(seed)
    tails: dict[int, int] = {}
    pending: list[tuple[int, int, int]] = []
    token = 0
    for _ in range(40):
        if rng.random() < 0.5 or not pending:
            items = []
            for _ in range(rng.choice((1, 2, 7, 30))):
                token += 1
                color, n = rng.randrange(4), rng.randint(1, 3)
                items.append((token, color, batch(token, n, rng.randint(10, 2000)), n))
                pending.append((token, color, n))
            if rng.random() < 0.3:
                items.append(items[0])  # the same token twice in one batch
            yield "prepare_many", items
        else:
            rng.shuffle(pending)
            k = rng.randint(1, 40)
            take, pending = pending[:k], pending[k:]
            items = []
            for tok, color, n in take:
                items.append((tok, tails.get(color, 0)))
                tails[color] = tails.get(color, 0) + n
            items.insert(rng.randrange(len(items) + 1), (10**9 + token, 0))  # never prepared
            if rng.random() < 0.3:
                items.append(items[0])  # committed earlier in the same batch
            yield "commit_many", items


@pytest.mark.parametrize("seed", range(3))
def test_batches_give_what_single_calls_give(engine, seed):
    """Each batch result equals the single call's on a MemoryEngine; so does what is stored."""
    reference = MemoryEngine()
    for method, items in _batch_workload(seed):
        got = [_outcome(r) for r in getattr(engine, method)(items)]
        expected = []
        for item in items:
            try:
                expected.append(getattr(reference, method.removesuffix("_many"))(*item))
            except UnknownToken as exc:
                expected.append(_outcome(exc))
        assert got == expected, method
    rng = random.Random(seed)
    state = rng.getstate()
    expected_view = _observe(reference, rng)
    rng.setstate(state)
    assert _observe(engine, rng) == expected_view


def test_prepare_many_refuses_only_the_items_that_cannot_be_stored(engine):
    items = [
        (1, 1, batch(1), 1),
        (2, 1, batch(2, records=2, size=10 << 20), 2),  # larger than any test store
        (3, 2, batch(3), 1),
    ]
    results = engine.prepare_many(items)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreFull)
    assert sorted(p.token for p in engine.recover().prepared) == [1, 3]
    assert engine.prepare_many([]) == []
    committed = engine.commit_many([(3, 0), (2, 0), (1, 0)])
    assert isinstance(committed[1], UnknownToken)
    assert [e for e in committed if isinstance(e, Committed)] == [(0, 1), (0, 1)]
    assert engine.commit_many([]) == []


def test_pm_prepare_many_fills_the_pool_like_single_prepares(tmp_path: Path):
    """Without an SSD tier the pool fills up: the same items fail as with one call each.

    Entries are committed at once, so checkpoints (which would relocate prepared
    entries, differently for different batch sizes) have nothing to move.
    """
    items = [(t, t % 3, batch(t, 1, (t * 7919) % 90_000 + 100), 1) for t in range(1, 200)]
    outcomes = []
    for name, batches in (("single", [[i] for i in items]), ("batched", [items[:64], items[64:]])):
        eng = PmEngine(tmp_path / name, pool_size_bytes=SMALL_POOL, ssd_max_bytes=0)
        try:
            outcomes.append([])
            for b in batches:
                results = [_outcome(r) for r in eng.prepare_many(b)]
                stored = [item[0] for item, r in zip(b, results, strict=True) if r is None]
                assert all(isinstance(e, Committed) for e in eng.commit_many(
                    [(t, t) for t in stored]))
                outcomes[-1] += results
            assert eng.recover().prepared == []
        finally:
            eng.close()
    assert outcomes[0] == outcomes[1]
    assert ("StoreFull", ()) in outcomes[0] and None in outcomes[0]


def test_pm_commit_many_survives_reopen_with_new_colors(shm_dir: Path):
    eng = PmEngine(shm_dir, pool_size_bytes=SMALL_POOL)
    payloads = {t: batch(t, 2) for t in range(1, 7)}
    eng.prepare_many([(t, t % 3, p, 2) for t, p in payloads.items()])
    eng.commit_many([(t, (t // 3) * 2) for t in payloads])  # colors 0, 1, 2 first seen here
    eng.trim(1, 1)
    eng.close()
    eng = PmEngine(shm_dir, pool_size_bytes=SMALL_POOL)
    try:
        recovered = eng.recover()
        assert recovered[:2] == ([], {0: (0, 6), 1: (2, 4), 2: (0, 4)})
        # Each token with its entry; the trimmed entry of color 1 is gone.
        assert sorted(recovered.recent) == [(2, 2, 0, 2), (3, 0, 2, 2), (4, 1, 2, 2),
                                            (5, 2, 2, 2), (6, 0, 4, 2)]
        for t, p in payloads.items():
            if (t % 3, t // 3) != (1, 0):
                entry = eng.read(t % 3, (t // 3) * 2)
                assert entry.payload == record_batch.with_base_offset(p, entry.sn)
    finally:
        eng.close()


def _random_ops(seed: int, steps: int) -> Iterator[tuple]:
    rng = random.Random(seed)
    tails: dict[int, int] = {}
    pending: list[tuple[int, int, int]] = []
    token = 0
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.45 or not pending:
            token += 1
            color, n = rng.randrange(3), rng.randint(1, 4)
            pending.append((token, color, n))
            yield ("prepare", token, color, batch(token, n, rng.randint(10, 3000)), n)
        elif roll < 0.85:
            tok, color, n = pending.pop(rng.randrange(len(pending)))
            yield ("commit", tok, tails.get(color, 0))
            tails[color] = tails.get(color, 0) + n
        elif roll < 0.9:
            tok, _, _ = pending.pop(rng.randrange(len(pending)))
            yield ("abort", tok)
        elif roll < 0.95:
            color = rng.randrange(3)
            yield ("trim", color, rng.randint(-1, tails.get(color, 0)))
        else:
            yield ("reopen",)


def _observe(eng: StorageEngine, rng: random.Random) -> list:
    seen: list = []
    for color in range(3):
        state = eng.state(color)
        seen.append((state, stored_bytes(eng, color)))
        seen.append(eng.read_range(color, 0, rng.randint(0, 20000)))
        for sn in rng.sample(range(state.tail + 2), min(5, state.tail + 2)):
            seen.append(eng.read(color, sn))
    rec = eng.recover()
    seen.append((sorted(rec.prepared), rec.colors))
    return seen


@pytest.mark.parametrize("seed", range(4))
def test_pm_engine_matches_memory_engine_through_checkpoints_and_reopens(seed, shm_dir):
    """Random workloads on a small pool, so entries cross to the SSD tier and back."""
    make_pm: Callable[[], PmEngine] = lambda: PmEngine(  # noqa: E731
        shm_dir, pool_size_bytes=SMALL_POOL, cache_bytes=16 << 10, ssd_high_water=0.3
    )
    memory, pm = MemoryEngine(), make_pm()
    rng = random.Random(seed)
    checkpoints = 0
    try:
        for op in _random_ops(seed, 3000):
            if op[0] == "reopen":
                checkpoints += pm.stats()["checkpoints"]
                pm.close()
                pm = make_pm()
                continue
            results = [getattr(eng, op[0])(*op[1:]) for eng in (memory, pm)]
            assert results[0] == results[1], op
            if rng.random() < 0.05:
                state = rng.getstate()
                expected = _observe(memory, rng)
                rng.setstate(state)
                assert _observe(pm, rng) == expected
        assert checkpoints + pm.stats()["checkpoints"] > 0
    finally:
        pm.close()


def test_pm_engine_reopens_where_it_left_off(shm_dir: Path):
    eng = PmEngine(shm_dir, pool_size_bytes=SMALL_POOL)
    payload = append(eng, 1, 1, 0, records=2)
    eng.prepare(2, 1, batch(2), 1)
    eng.trim(5, 7)
    eng.close()
    eng = PmEngine(shm_dir, pool_size_bytes=SMALL_POOL)
    try:
        assert eng.read(1, 1).payload[8:] == payload[8:]
        assert eng.recover().prepared == [(2, 1, 1)]
        assert eng.prepared_payload(2) == batch(2)
        assert eng.recover().colors == {1: (0, 2), 5: (8, 8)}
        assert eng.commit(2, 2).sn == 2
    finally:
        eng.close()


def test_pm_engine_is_unusable_after_close_without_crashing(shm_dir: Path):
    eng = PmEngine(shm_dir, pool_size_bytes=SMALL_POOL)
    eng.close()
    eng.close()
    with pytest.raises((AttributeError, TypeError)):
        eng.prepare(1, 1, batch(1), 1)
    with pytest.raises((AttributeError, TypeError)):
        eng.trim(1, 5)
