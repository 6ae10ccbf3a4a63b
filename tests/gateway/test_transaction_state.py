"""The folds behind transactions: ``__transaction_state`` (TransactionState) and the
transactional commits of ``__consumer_offsets`` (OffsetState), in any order, twice, and
through a snapshot."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace

import pytest

from flexlog.gateway import transaction_coordinator as decide
from flexlog.gateway import transaction_state
from flexlog.gateway.committed_offsets import Committed, OffsetState
from flexlog.gateway.transaction_state import (
    Aborted,
    TransactionState,
    Txn,
    TxnPartition,
    TxnStatus,
    group_target,
    partition_target,
)

S = TxnStatus
DAY_MS = 24 * 3600 * 1000


def enc(event: dict[str, object]) -> bytes:
    return json.dumps(event).encode()


def txn_rec(txn_id: str, pid: int, epoch: int, status: TxnStatus, number: int,
            parts: list[tuple[int, int]] = (), groups: tuple[str, ...] = (), updated: int = 0) -> bytes:
    """parts: (color, first); the partition index is the color's last digit."""
    t = Txn(txn_id, pid, epoch, status, number, 60_000, 0 if status.open else -1, updated,
            tuple(TxnPartition("t", c % 10, c, f) for c, f in parts), groups)
    return enc(t.record())


def marker(txn_id: str, number: int, pid: int, epoch: int, commit: bool, color: int, first: int,
           offset: int) -> bytes:
    return enc({"op": "marker", "id": txn_id, "number": number, "pid": pid, "epoch": epoch,
                "commit": commit, "color": color, "first": first, "offset": offset})


def group_marker(txn_id: str, number: int, pid: int, commit: bool, group: str) -> bytes:
    return enc({"op": "marker", "id": txn_id, "number": number, "pid": pid, "epoch": 0,
                "commit": commit, "group": group})


def fold(records: list[tuple[int, bytes]]) -> TransactionState:
    state = TransactionState()
    for sn, value in records:
        state.apply(sn, value)
    return state


def answers(state: TransactionState, colors: range, upto: int) -> dict[str, object]:
    """Everything readers and writers ask of the fold."""
    pids = {t.producer_id for t in state.txns.values()}
    epochs = range(0, 4)
    return {
        "txns": {k: replace(t, sn=-1) for k, t in state.txns.items()},
        "stable": {c: state.stable_before(c) for c in colors},
        "aborted": {(c, s, e): state.aborted_between(c, s, e)
                    for c in colors for s in range(0, upto, 7) for e in range(s, upto, 9)},
        "ongoing": {(c, p, e) for c in colors for p in pids for e in epochs if state.ongoing(c, p, e)},
        "preparing": sorted(t.txn_id for t in state.preparing()),
        "unmarked": {k: state.unmarked(t) for k, t in state.txns.items()},
        "epochs": {p: state.epoch_of(p) for p in pids},
    }


# ---- a random history of transactions ---------------------------------------------------

COLORS = range(10, 14)


def history(rng: random.Random) -> list[tuple[int, bytes]]:
    """Records in SN order as coordinators and leaders write them: a few ids, each through
    transactions that commit, abort, or are aborted under a bumped epoch (timeout, new
    instance); markers come one by one after the prepare, the completion after all of them,
    and some transactions are left open or preparing."""
    ids = {f"tx{i}": {"pid": 100 + i, "epoch": 0, "number": 0, "open": None, "due": []} for i in range(3)}
    out: list[bytes] = []
    tails = dict.fromkeys(COLORS, 0)
    for _ in range(rng.randint(5, 60)):
        for c in tails:
            tails[c] += rng.randint(0, 3)
        txn_id = rng.choice(list(ids))
        s = ids[txn_id]
        if s["due"]:  # preparing: write one of its markers, or complete it once all are written
            entry = s["due"].pop(rng.randrange(len(s["due"])))
            out.append(entry)
            if not s["due"]:
                parts, groups, commit = s["open"]
                done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
                if rng.random() < 0.8:
                    out.append(txn_rec(txn_id, s["pid"], s["epoch"], done, s["number"]))
                    s["open"] = None
                else:
                    ids.pop(txn_id)  # marked everywhere, its completion not written yet
                    if not ids:
                        break
        elif s["open"] is None:
            s["number"] += 1
            parts = [(c, tails[c]) for c in rng.sample(list(COLORS), rng.randint(1, 3))]
            groups = ("g",) if rng.random() < 0.3 else ()
            s["open"] = (parts, groups, None)
            out.append(txn_rec(txn_id, s["pid"], s["epoch"], S.ONGOING, s["number"], parts, groups))
        elif rng.random() < 0.3:  # extended with one more partition
            parts, groups, _ = s["open"]
            free = [c for c in COLORS if c not in {p for p, _ in parts}]
            if free:
                parts = [*parts, (free[0], tails[free[0]])]
                s["open"] = (parts, groups, None)
                out.append(txn_rec(txn_id, s["pid"], s["epoch"], S.ONGOING, s["number"], parts, groups))
        else:
            parts, groups, _ = s["open"]
            commit = rng.random() < 0.5
            if rng.random() < 0.3:
                s["epoch"] += 1
                commit = False
            s["open"] = (parts, groups, commit)
            status = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
            out.append(txn_rec(txn_id, s["pid"], s["epoch"], status, s["number"], parts, groups))
            for c, first in parts:
                tails[c] += rng.randint(0, 2)
                s["due"].append(marker(txn_id, s["number"], s["pid"], s["epoch"], commit, c, first, tails[c]))
                tails[c] += 1
            s["due"].extend(group_marker(txn_id, s["number"], s["pid"], commit, g) for g in groups)
    return list(enumerate(out))


@pytest.mark.parametrize("seed", range(60))
def test_the_fold_is_the_same_in_any_order_and_twice(seed: int) -> None:
    rng = random.Random(seed)
    records = history(rng)
    upto = 60
    expected = answers(fold(records), COLORS, upto)
    shuffled = records[:]
    rng.shuffle(shuffled)
    assert answers(fold(shuffled), COLORS, upto) == expected, f"seed {seed}: shuffled"
    doubled = records + rng.sample(records, len(records))
    rng.shuffle(doubled)
    assert answers(fold(doubled), COLORS, upto) == expected, f"seed {seed}: duplicated"
    # Some out of turn first (a gateway's own records), then the sync applies all in order.
    state = TransactionState()
    for sn, value in rng.sample(records, len(records) // 3):
        state.apply(sn, value, advance=False)
    assert state.applied == 0
    for sn, value in records:
        state.apply(sn, value)
    assert state.applied == len(records)
    assert answers(state, COLORS, upto) == expected, f"seed {seed}: out of turn"


@pytest.mark.parametrize("seed", range(30))
def test_a_snapshot_of_a_pruned_fold_reloads_to_the_same_answers(seed: int) -> None:
    rng = random.Random(seed)
    records = history(rng)
    cut = rng.randint(0, len(records))
    live = fold(records[:cut])
    live.prune(dict.fromkeys(COLORS, 0), now_ms=0)
    snap = enc(live.snapshot())
    # The snapshot is appended after the cut; the log is trimmed before the cut.
    rest = records[cut:]
    snap_sn = len(records)
    for sn, value in rest:
        live.apply(sn, value)
    live.apply(snap_sn, snap)
    reloaded = TransactionState()
    order = [*rest, (snap_sn, snap)]
    rng.shuffle(order)
    for sn, value in order:
        reloaded.apply(sn, value)
    full = fold(records)
    upto = 60
    assert answers(reloaded, COLORS, upto) == answers(live, COLORS, upto) == answers(full, COLORS, upto)


def test_stable_before_is_the_first_offset_of_the_oldest_unmarked_open_transaction() -> None:
    state = fold([
        (0, txn_rec("a", 1, 0, S.ONGOING, 1, [(10, 5), (11, 0)])),
        (1, txn_rec("b", 2, 0, S.ONGOING, 1, [(10, 3)])),
        (2, txn_rec("c", 3, 0, S.COMPLETE_COMMIT, 4)),
    ])
    assert (state.stable_before(10), state.stable_before(11), state.stable_before(12)) == (3, 0, None)
    state.apply(3, txn_rec("b", 2, 0, S.PREPARE_COMMIT, 1, [(10, 3)]))
    assert state.stable_before(10) == 3  # preparing, marker not written yet: still unstable
    state.apply(4, marker("b", 1, 2, 0, True, 10, 3, 20))
    assert state.stable_before(10) == 5  # b marked there: a's first is the bound now
    state.apply(5, txn_rec("a", 1, 1, S.PREPARE_ABORT, 1, [(10, 5), (11, 0)]))
    state.apply(6, marker("a", 1, 1, 1, False, 11, 0, 8))
    assert (state.stable_before(10), state.stable_before(11)) == (5, None)
    state.apply(7, marker("a", 1, 1, 1, False, 10, 5, 21))
    assert state.stable_before(10) is None
    # A marker of an older transaction of the id does not mark the current one.
    state.apply(8, txn_rec("a", 1, 1, S.ONGOING, 2, [(10, 30)]))
    state.apply(9, marker("a", 1, 1, 1, True, 10, 30, 40))
    assert state.stable_before(10) == 30
    assert state.unmarked(state.txns["a"]) == {partition_target(10)}


def test_aborted_between_lists_the_ranges_that_overlap() -> None:
    state = fold([
        (0, marker("a", 1, 1, 0, False, 10, 5, 9)),
        (1, marker("b", 1, 2, 0, False, 10, 7, 15)),
        (2, marker("c", 1, 3, 0, True, 10, 0, 4)),  # a commit keeps no range
        (3, marker("d", 1, 4, 0, False, 11, 0, 3)),
    ])
    assert state.aborted_between(10, 0, 100) == [(1, 5, 9), (2, 7, 15)]
    assert state.aborted_between(10, 0, 5) == []  # [0, 5) ends before a's first
    assert state.aborted_between(10, 0, 6) == [(1, 5, 9)]
    assert state.aborted_between(10, 9, 10) == [(1, 5, 9), (2, 7, 15)]  # a's marker itself at 9
    assert state.aborted_between(10, 10, 12) == [(2, 7, 15)]
    assert state.aborted_between(10, 16, 30) == []
    assert state.aborted_between(12, 0, 100) == []
    a = state.aborted_between(10, 0, 100)[0]
    assert isinstance(a, Aborted) and (a.producer_id, a.first, a.last) == (1, 5, 9)


def test_ongoing_holds_for_the_producer_epoch_and_partitions_of_an_ongoing_transaction() -> None:
    state = fold([(0, txn_rec("a", 1, 2, S.ONGOING, 1, [(10, 0)]))])
    assert state.ongoing(10, 1, 2)
    assert not state.ongoing(11, 1, 2)
    assert not state.ongoing(10, 1, 1) and not state.ongoing(10, 1, 3) and not state.ongoing(10, 9, 2)
    state.apply(1, txn_rec("a", 1, 2, S.ONGOING, 1, [(10, 0), (11, 4)]))
    assert state.ongoing(11, 1, 2)
    state.apply(2, txn_rec("a", 1, 2, S.PREPARE_COMMIT, 1, [(10, 0), (11, 4)]))
    assert not state.ongoing(10, 1, 2)  # no batch after the end is decided
    state.apply(3, txn_rec("a", 1, 3, S.PREPARE_ABORT, 1, [(10, 0)]))
    assert state.epoch_of(1) == 3 and state.epoch_of(9) is None


def test_the_latest_record_wins_whatever_the_order() -> None:
    newer = txn_rec("a", 1, 0, S.PREPARE_COMMIT, 1, [(10, 0)])
    older = txn_rec("a", 1, 0, S.ONGOING, 1, [(10, 0)])
    state = fold([(5, newer), (3, older)])
    assert state.txns["a"].status == S.PREPARE_COMMIT and state.txns["a"].sn == 5
    assert state.applied == 6


def test_group_markers_mark_the_group_and_keep_no_range() -> None:
    state = fold([(0, txn_rec("a", 1, 0, S.PREPARE_COMMIT, 1, [(10, 0)], ("g", "h")))])
    assert state.unmarked(state.txns["a"]) == {partition_target(10), group_target("g"), group_target("h")}
    state.apply(1, group_marker("a", 1, 1, True, "g"))
    assert state.unmarked(state.txns["a"]) == {partition_target(10), group_target("h")}
    assert state.aborted == {}


def test_prune_forgets_idle_ids_finished_markers_and_trimmed_ranges() -> None:
    state = fold([
        (0, txn_rec("idle", 1, 0, S.COMPLETE_COMMIT, 1, updated=0)),
        (1, txn_rec("recent", 2, 0, S.COMPLETE_ABORT, 1, updated=7 * DAY_MS)),
        (2, txn_rec("open", 3, 0, S.PREPARE_ABORT, 2, [(10, 50), (11, 0)], updated=0)),
        (3, marker("recent", 1, 2, 0, False, 10, 0, 9)),
        (4, marker("open", 2, 3, 0, False, 11, 0, 30)),
        (5, marker("open", 1, 3, 0, False, 10, 20, 29)),
        (6, marker("gone", 1, 4, 0, False, 12, 0, 3)),
    ])
    state.prune({10: 10, 11: 0}, now_ms=7 * DAY_MS + 1)
    assert set(state.txns) == {"recent", "open"}  # open ones are kept however old
    assert state.marked == {("open", 3, 2, partition_target(11))}
    assert state.aborted == {10: {Aborted((3, 20, 29))}, 11: {Aborted((3, 0, 30))}}  # 12 deleted
    assert state.stable_before(10) == 50 and state.stable_before(11) is None


def test_malformed_records_are_skipped_with_one_warning_each(caplog: pytest.LogCaptureFixture) -> None:
    state = TransactionState()
    bad = [b"", b"not json", b"[]", enc({"no": "op"}), enc({"op": "txn", "id": "a"}),
           enc({"op": "marker", "id": "a", "number": "x"}), enc({"op": "txn", **json.loads(
               txn_rec("a", 1, 0, S.ONGOING, 1))} | {"status": "Sideways"}), None]
    with caplog.at_level(logging.WARNING, logger="flexlog.gateway.transactions"):
        for sn, value in enumerate(bad):
            state.apply(sn, value)
    assert len(caplog.records) == len(bad)
    assert all("malformed" in r.getMessage() for r in caplog.records)
    assert state.txns == {} and state.marked == set() and state.aborted == {}
    assert state.applied == len(bad)  # skipped, not stuck on
    state.apply(len(bad), txn_rec("a", 1, 0, S.ONGOING, 1, [(10, 0)]))
    assert state.ongoing(10, 1, 0)


def test_an_unknown_op_is_ignored_silently(caplog: pytest.LogCaptureFixture) -> None:
    state = TransactionState()
    with caplog.at_level(logging.WARNING, logger="flexlog.gateway.transactions"):
        state.apply(0, enc({"op": "something-newer"}))
    assert not caplog.records and state.applied == 1


# ---- OffsetState: offsets committed in transactions ----------------------------------------

def commit(group: str, offset: int, partition: int = 0, ts: int = 1) -> bytes:
    return enc({"op": "commit", "group": group, "ts": ts, "offsets": [["t", partition, offset, -1, None]]})


def txn_commit(group: str, pid: int, offset: int, partition: int = 0) -> bytes:
    return enc({"op": "txn_commit", "group": group, "pid": pid, "ts": 1,
                "offsets": [["t", partition, offset, -1, None]]})


def txn_end(group: str, pid: int, ok: bool) -> bytes:
    return enc({"op": "txn_end", "group": group, "pid": pid, "commit": ok, "ts": 1})


def offset(state: OffsetState, group: str = "g", partition: int = 0) -> int | None:
    entry = state.get((group, "t", partition))
    return None if entry is None else entry.offset


def offsets_fold(records: list[tuple[int, bytes]], out_of_turn: bool = False) -> OffsetState:
    state = OffsetState()
    for sn, value in records:
        state.apply(sn, value, advance=not out_of_turn)
    return state


def test_a_pending_commit_is_hidden_until_its_transaction_commits() -> None:
    state = offsets_fold([(0, commit("g", 5)), (1, txn_commit("g", 7, 9))])
    assert offset(state) == 5
    assert state.unstable(("g", "t", 0)) and not state.unstable(("g", "t", 1))
    assert not state.unstable(("h", "t", 0))
    state.apply(2, txn_end("g", 7, True))
    assert offset(state) == 9 and not state.unstable(("g", "t", 0))
    assert state.get(("g", "t", 0)) == Committed(2, 9, None, -1, 1, order=1)  # at the end's SN
    assert state.pending == {}


def test_a_pending_commit_is_dropped_when_its_transaction_aborts() -> None:
    state = offsets_fold([(0, commit("g", 5)), (1, txn_commit("g", 7, 9)), (2, txn_end("g", 7, False))])
    assert offset(state) == 5 and not state.unstable(("g", "t", 0)) and state.pending == {}
    # The producer's next transaction is not affected by the dropped one.
    state.apply(3, txn_commit("g", 7, 11))
    state.apply(4, txn_end("g", 7, True))
    assert offset(state) == 11


def test_the_end_resolves_only_its_producers_and_groups_pending_commits() -> None:
    state = offsets_fold([(0, txn_commit("g", 7, 9)), (1, txn_commit("g", 8, 4, partition=1)),
                          (2, txn_commit("h", 7, 3)), (3, txn_end("g", 7, True))])
    assert offset(state) == 9
    assert offset(state, partition=1) is None and state.unstable(("g", "t", 1))
    assert offset(state, "h") is None and state.unstable(("h", "t", 0))


def test_a_plain_commit_after_the_transactional_one_wins() -> None:
    state = offsets_fold([(0, txn_commit("g", 7, 9)), (1, txn_end("g", 7, True)), (2, commit("g", 3))])
    assert offset(state) == 3
    state = offsets_fold([(0, txn_commit("g", 7, 9)), (1, commit("g", 3)), (2, txn_end("g", 7, True))])
    assert offset(state) == 9  # committed at the end's SN, after the plain commit


@pytest.mark.parametrize("ok", [True, False])
def test_an_end_folded_before_its_pending_commit_still_resolves_it(ok: bool) -> None:
    records = [(0, commit("g", 5)), (1, txn_commit("g", 7, 9)), (2, txn_end("g", 7, ok)),
               (3, txn_commit("g", 7, 12)), (4, txn_end("g", 7, not ok))]
    in_order = offsets_fold(records)
    for perm in ([4, 2, 3, 1, 0], [2, 1, 0, 4, 3], [3, 4, 2, 0, 1]):
        state = offsets_fold([records[i] for i in perm])
        assert offset(state) == offset(in_order), perm
        assert state.pending == {} and not state.unstable(("g", "t", 0))
    assert offset(in_order) == (9 if ok else 12)


@pytest.mark.parametrize("seed", range(40))
def test_transactional_commits_fold_the_same_in_any_order(seed: int) -> None:
    rng = random.Random(seed)
    records: list[bytes] = []
    # One pending commit per partition and transaction here: two are
    # test_two_commits_of_a_partition_in_one_transaction_resolve_to_the_later_one.
    open_keys: set[tuple[str, int, int]] = set()
    for _ in range(rng.randint(1, 12)):
        pid = rng.choice([7, 8])
        group = rng.choice(["g", "h"])
        partition = rng.randint(0, 1)
        kind = rng.random()
        if kind < 0.3:
            records.append(commit(group, rng.randint(0, 99), partition))
        elif kind < 0.7 and (group, pid, partition) not in open_keys:
            open_keys.add((group, pid, partition))
            records.append(txn_commit(group, pid, rng.randint(0, 99), partition))
        else:
            open_keys -= {k for k in open_keys if k[:2] == (group, pid)}
            records.append(txn_end(group, pid, rng.random() < 0.5))
    numbered = list(enumerate(records))
    expected = offsets_fold(numbered)
    keys = [(g, "t", p) for g in "gh" for p in (0, 1)]

    def seen(state: OffsetState) -> tuple[object, ...]:
        return ({k: state.get(k) for k in keys}, {k: state.unstable(k) for k in keys})

    shuffled = numbered[:]
    rng.shuffle(shuffled)
    assert seen(offsets_fold(shuffled)) == seen(expected), f"seed {seed}"
    doubled = numbered + numbered
    rng.shuffle(doubled)
    assert seen(offsets_fold(doubled, out_of_turn=True)) == seen(expected), f"seed {seed}"


def test_pending_commits_and_ends_survive_a_snapshot() -> None:
    state = offsets_fold([(0, commit("g", 5)), (1, txn_commit("g", 7, 9)), (2, txn_commit("g", 8, 6, 1)),
                          (3, txn_end("g", 8, True))])
    snap = state.snapshot(tombstones_after_ms=0)
    assert snap["upto"] == 4
    reloaded = offsets_fold([(4, enc(snap))])
    assert offset(reloaded) == 5 and offset(reloaded, partition=1) == 6
    assert reloaded.unstable(("g", "t", 0)) and not reloaded.unstable(("g", "t", 1))
    reloaded.apply(5, txn_end("g", 7, True))
    assert offset(reloaded) == 9 and not reloaded.unstable(("g", "t", 0))
    # A snapshot holding an end folded out of turn (upto 1), and the pending record it resolves
    # (SN 1, after upto, so not trimmed) folded after the snapshot: the kept end resolves it.
    racing = offsets_fold([(0, commit("g", 5))])
    racing.apply(3, txn_end("g", 8, True), advance=False)
    early = racing.snapshot(tombstones_after_ms=0)
    assert early["upto"] == 1
    late = offsets_fold([(4, enc(early)), (1, txn_commit("g", 8, 6, 1))])
    assert offset(late, partition=1) == 6 and not late.unstable(("g", "t", 1))


def test_a_pending_commit_folded_after_a_newer_end_of_its_producer_is_resolved_by_the_first() -> None:
    # txn_commit at 1 belongs to the transaction ended at 2 (abort), not to the one ended at 4.
    state = offsets_fold([(4, txn_end("g", 7, True)), (2, txn_end("g", 7, False)),
                          (1, txn_commit("g", 7, 9))])
    assert offset(state) is None and state.pending == {}


def test_two_commits_of_a_partition_in_one_transaction_resolve_to_the_later_one() -> None:
    # sendOffsetsToTransaction twice in one transaction, for the same partition (85, then 87).
    records = [(0, txn_commit("g", 8, 85)), (1, commit("g", 68)), (2, txn_commit("g", 8, 87)),
               (3, txn_end("g", 8, True))]
    assert offset(offsets_fold(records)) == 87
    # The same records, the end folded before the later pending one (found by seed 13 above).
    assert offset(offsets_fold([records[i] for i in (0, 3, 2, 1)])) == 87


# ---- found by the simulation (tests/gateway/test_transaction_sim.py) ------------------------

def test_an_id_initialised_again_after_it_expired_is_not_marked_by_its_old_markers() -> None:
    leader = TransactionState()  # leads the partition, never restarted
    controller = TransactionState()  # coordinates the id, compacts (prunes its live fold)
    log_: list[bytes] = []

    def append(event: dict[str, object]) -> None:
        log_.append(enc(event))
        for state in (leader, controller):
            state.apply(len(log_) - 1, log_[-1])

    def write(txn: Txn | None) -> Txn:
        assert txn is not None
        append(txn.record())
        return controller.txns[txn.txn_id]

    t = write(decide.init_producer_id(None, "tx", 60_000, -1, -1, 1, 0).write)
    t = write(decide.add(t, 1, 0, [TxnPartition("t", 0, 10, 0)], [], 10).write)
    t = write(decide.end(t, 1, 0, True, 20).write)
    append(json.loads(marker("tx", t.number, 1, 0, True, 10, 0, 3)))
    t = write(decide.complete(t, controller.unmarked(t), 30))
    assert t.status == S.COMPLETE_COMMIT and t.number == 1
    # Idle past transactional.id.expiration.ms, the controller compacts: the id is forgotten.
    controller.prune({}, now_ms=30 + transaction_state.ID_EXPIRATION_MS + 1)
    append(controller.snapshot())
    assert "tx" not in controller.txns
    # The id comes back: a new producer id, and transaction number 1 again.
    t = write(decide.init_producer_id(None, "tx", 60_000, -1, -1, 2, 10**10).write)
    t = write(decide.add(t, 2, 0, [TxnPartition("t", 0, 10, 5)], [], 10**10).write)
    assert (t.producer_id, t.number, t.status) == (2, 1, S.ONGOING)
    assert controller.stable_before(10) == 5 and controller.unmarked(t) == {partition_target(10)}
    # The leader must hold the LSO before the new transaction and owe its marker, as the
    # controller does; it takes the old transaction 1's marker for the new one's.
    assert leader.txns["tx"].producer_id == 2 and leader.ongoing(10, 2, 0)
    assert leader.unmarked(leader.txns["tx"]) == {partition_target(10)}
    assert leader.stable_before(10) == 5

