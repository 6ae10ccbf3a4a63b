"""The transaction coordinator's pure decisions: every state against every request."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flexlog.gateway import transaction_coordinator as decide
from flexlog.gateway.protocol import ErrorCode
from flexlog.gateway.transaction_coordinator import MAX_EPOCH, MAX_TIMEOUT_MS, Decision
from flexlog.gateway.transaction_state import Txn, TxnPartition, TxnStatus, group_target, partition_target

S = TxnStatus
PID, EPOCH, NUMBER, TIMEOUT, NOW = 7, 3, 5, 60_000, 1_000_000
P0 = TxnPartition("t", 0, 100, 40)
P1 = TxnPartition("t", 1, 101, 12)
P2 = TxnPartition("u", 0, 200, 0)


def txn(status: TxnStatus, *, pid: int = PID, epoch: int = EPOCH, number: int = NUMBER,
        partitions: tuple[TxnPartition, ...] | None = None, groups: tuple[str, ...] | None = None,
        start_ms: int | None = None) -> Txn:
    """A state as the coordinator leaves it: open ones hold partitions, finished ones none."""
    if partitions is None:
        partitions = (P0, P1) if status.open else ()
    if groups is None:
        groups = ("g",) if status.open else ()
    if start_ms is None:
        start_ms = NOW - 1_000 if status.open else -1
    return Txn("tx", pid, epoch, status, number, TIMEOUT, start_ms, NOW - 1_000, partitions, groups, sn=9)


FINISHED = [S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT]
PREPARING = [S.PREPARE_COMMIT, S.PREPARE_ABORT]


# ---- InitProducerId ------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [0, -1, MAX_TIMEOUT_MS + 1])
@pytest.mark.parametrize("status", [None, *S])
def test_init_refuses_a_timeout_out_of_range(timeout: int, status: TxnStatus | None) -> None:
    current = None if status is None else txn(status)
    assert decide.init_producer_id(current, "tx", timeout, -1, -1, 99, NOW) == \
        Decision(ErrorCode.INVALID_TRANSACTION_TIMEOUT)


def test_init_takes_the_largest_timeout() -> None:
    d = decide.init_producer_id(None, "tx", MAX_TIMEOUT_MS, -1, -1, 99, NOW)
    assert d.error == ErrorCode.NONE and d.write is not None and d.write.timeout_ms == MAX_TIMEOUT_MS


def test_init_of_a_new_id_needs_a_fresh_producer_id() -> None:
    assert decide.needs_producer_id(None)
    # Without one the decision writes nothing (the shell answers COORDINATOR_NOT_AVAILABLE).
    assert decide.init_producer_id(None, "tx", TIMEOUT, -1, -1, None, NOW) == Decision()
    d = decide.init_producer_id(None, "tx", TIMEOUT, -1, -1, 42, NOW)
    assert d == Decision(ErrorCode.NONE, Txn("tx", 42, 0, S.EMPTY, 0, TIMEOUT, -1, NOW))


@pytest.mark.parametrize("status", FINISHED)
def test_init_of_a_finished_id_bumps_the_epoch_and_keeps_the_producer_id(status: TxnStatus) -> None:
    current = txn(status)
    assert not decide.needs_producer_id(current)
    d = decide.init_producer_id(current, "tx", TIMEOUT * 2, -1, -1, None, NOW)
    assert d.error == ErrorCode.NONE
    assert d.write == replace(current, epoch=EPOCH + 1, status=S.EMPTY, timeout_ms=TIMEOUT * 2,
                              start_ms=-1, updated_ms=NOW, partitions=(), groups=())
    assert d.write.number == NUMBER  # markers of the next transaction name number + 1


def test_init_of_an_ongoing_transaction_aborts_it_under_a_new_epoch() -> None:
    current = txn(S.ONGOING)
    d = decide.init_producer_id(current, "tx", TIMEOUT, -1, -1, None, NOW)
    assert d.error == ErrorCode.CONCURRENT_TRANSACTIONS
    # The old producer's epoch is fenced at once; partitions stay, their ABORT markers are due.
    assert d.write == replace(current, epoch=EPOCH + 1, status=S.PREPARE_ABORT, updated_ms=NOW)


@pytest.mark.parametrize("status", PREPARING)
def test_init_while_preparing_asks_to_retry_and_writes_nothing(status: TxnStatus) -> None:
    assert decide.init_producer_id(txn(status), "tx", TIMEOUT, -1, -1, None, NOW) == \
        Decision(ErrorCode.CONCURRENT_TRANSACTIONS)


@pytest.mark.parametrize("status", FINISHED)
def test_init_at_the_last_epoch_takes_a_new_producer_id(status: TxnStatus) -> None:
    current = txn(status, epoch=MAX_EPOCH - 1)
    assert decide.needs_producer_id(current)
    assert decide.init_producer_id(current, "tx", TIMEOUT, -1, -1, None, NOW) == Decision()
    d = decide.init_producer_id(current, "tx", TIMEOUT, -1, -1, 55, NOW)
    assert d.error == ErrorCode.NONE and d.write is not None
    assert (d.write.producer_id, d.write.epoch, d.write.status) == (55, 0, S.EMPTY)
    assert d.write.number == NUMBER and d.write.partitions == () and d.write.groups == ()


def test_init_one_before_the_last_epoch_still_bumps() -> None:
    current = txn(S.COMPLETE_COMMIT, epoch=MAX_EPOCH - 2)
    assert not decide.needs_producer_id(current)
    d = decide.init_producer_id(current, "tx", TIMEOUT, -1, -1, None, NOW)
    assert d.write is not None and (d.write.producer_id, d.write.epoch) == (PID, MAX_EPOCH - 1)


def test_an_open_transaction_at_the_last_epoch_needs_no_producer_id_yet() -> None:
    # It is aborted first; the id is taken by the init after the abort completes.
    assert not decide.needs_producer_id(txn(S.ONGOING, epoch=MAX_EPOCH - 1))


@pytest.mark.parametrize("status", FINISHED)
def test_kip_360_reinit_with_the_current_id_and_epoch_bumps(status: TxnStatus) -> None:
    d = decide.init_producer_id(txn(status), "tx", TIMEOUT, PID, EPOCH, None, NOW)
    assert d.error == ErrorCode.NONE and d.write is not None and d.write.epoch == EPOCH + 1


@pytest.mark.parametrize(("pid", "epoch"), [(PID, EPOCH - 1), (PID, EPOCH + 1), (PID + 1, EPOCH)])
@pytest.mark.parametrize("status", list(S))
def test_kip_360_reinit_with_another_id_or_epoch_is_fenced(pid: int, epoch: int, status: TxnStatus) -> None:
    if (pid, epoch) == (PID, EPOCH - 1) and status in (S.PREPARE_ABORT, S.COMPLETE_ABORT):
        pytest.skip("the epoch a timeout aborted: test_kip_360_reinit_with_the_epoch_that_timed_out")
    assert decide.init_producer_id(txn(status), "tx", TIMEOUT, pid, epoch, None, NOW) == \
        Decision(ErrorCode.PRODUCER_FENCED)


def test_kip_360_reinit_with_the_epoch_that_timed_out() -> None:
    # The coordinator aborted on timeout with epoch + 1; the producer still holds epoch.
    aborted = txn(S.COMPLETE_ABORT, epoch=EPOCH + 1)
    d = decide.init_producer_id(aborted, "tx", TIMEOUT, PID, EPOCH, None, NOW)
    assert d.error == ErrorCode.NONE and d.write is not None and d.write.epoch == EPOCH + 2
    # Until the abort's markers are written, it is asked to retry.
    assert decide.init_producer_id(replace(aborted, status=S.PREPARE_ABORT), "tx", TIMEOUT, PID, EPOCH,
                                   None, NOW) == Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    # A commit's epoch is not a timed-out one.
    assert decide.init_producer_id(replace(aborted, status=S.COMPLETE_COMMIT), "tx", TIMEOUT, PID, EPOCH,
                                   None, NOW) == Decision(ErrorCode.PRODUCER_FENCED)


# ---- fencing (AddPartitions, AddOffsets, EndTxn) ---------------------------------------

def _requests(pid: int, epoch: int) -> dict[str, Decision]:
    return {
        "add": decide.add(None, pid, epoch, [P2], [], NOW),
        "end": decide.end(None, pid, epoch, True, NOW),
    }


def test_requests_about_an_unknown_id_get_invalid_producer_id_mapping() -> None:
    assert set(_requests(PID, EPOCH).values()) == {Decision(ErrorCode.INVALID_PRODUCER_ID_MAPPING)}
    assert decide.add(None, PID, EPOCH, [], ["g"], NOW) == Decision(ErrorCode.INVALID_PRODUCER_ID_MAPPING)


CALLS = {
    "add_partitions": lambda t, pid, epoch: decide.add(t, pid, epoch, [P2], [], NOW),
    "add_offsets": lambda t, pid, epoch: decide.add(t, pid, epoch, [], ["h"], NOW),
    "commit": lambda t, pid, epoch: decide.end(t, pid, epoch, True, NOW),
    "abort": lambda t, pid, epoch: decide.end(t, pid, epoch, False, NOW),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", list(S))
def test_another_producer_id_gets_invalid_producer_id_mapping(call: str, status: TxnStatus) -> None:
    assert CALLS[call](txn(status), PID + 1, EPOCH) == Decision(ErrorCode.INVALID_PRODUCER_ID_MAPPING)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("epoch", [EPOCH - 2, EPOCH + 1])
def test_a_wrong_epoch_is_fenced(call: str, status: TxnStatus, epoch: int) -> None:
    assert CALLS[call](txn(status), PID, epoch) == Decision(ErrorCode.PRODUCER_FENCED)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", [S.PREPARE_ABORT, S.COMPLETE_ABORT])
def test_the_epoch_a_timeout_aborted_gets_invalid_producer_epoch(call: str, status: TxnStatus) -> None:
    # KIP-588: abortable, the client re-initialises with its id and epoch.
    assert CALLS[call](txn(status), PID, EPOCH - 1) == Decision(ErrorCode.INVALID_PRODUCER_EPOCH)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", [S.EMPTY, S.ONGOING, S.PREPARE_COMMIT, S.COMPLETE_COMMIT])
def test_the_previous_epoch_is_fenced_unless_an_abort_bumped_it(call: str, status: TxnStatus) -> None:
    assert CALLS[call](txn(status), PID, EPOCH - 1) == Decision(ErrorCode.PRODUCER_FENCED)


# ---- AddPartitionsToTxn / AddOffsetsToTxn ----------------------------------------------

@pytest.mark.parametrize("status", FINISHED)
def test_adding_to_a_finished_id_starts_the_next_transaction(status: TxnStatus) -> None:
    current = txn(status)
    d = decide.add(current, PID, EPOCH, [P0, P2], [], NOW)
    assert d.error == ErrorCode.NONE
    assert d.write == replace(current, status=S.ONGOING, number=NUMBER + 1, start_ms=NOW, updated_ms=NOW,
                              partitions=(P0, P2), groups=())
    d = decide.add(current, PID, EPOCH, [], ["g"], NOW)
    assert d.write is not None and d.write.status == S.ONGOING and d.write.number == NUMBER + 1
    assert d.write.groups == ("g",) and d.write.partitions == ()


def test_a_finished_transactions_partitions_do_not_count_as_added() -> None:
    # Defensive: even if a finished state still named partitions, the next transaction needs them again.
    current = txn(S.COMPLETE_COMMIT, partitions=(P0,), groups=("g",))
    d = decide.add(current, PID, EPOCH, [P0], ["g"], NOW)
    assert d.write is not None and d.write.partitions == (P0,) and d.write.groups == ("g",)
    assert d.write.number == NUMBER + 1


def test_adding_to_an_ongoing_transaction_extends_it() -> None:
    current = txn(S.ONGOING)
    d = decide.add(current, PID, EPOCH, [P1, P2], ["g", "h"], NOW)
    assert d.error == ErrorCode.NONE
    assert d.write == replace(current, partitions=(P0, P1, P2), groups=("g", "h"), updated_ms=NOW)
    assert d.write.number == NUMBER and d.write.start_ms == current.start_ms  # the timeout keeps running


def test_a_partition_is_known_by_topic_and_index_not_by_its_first_offset() -> None:
    # A retried AddPartitions measures a later tail: the first offset stays the first one.
    current = txn(S.ONGOING)
    assert decide.add(current, PID, EPOCH, [replace(P0, first=999)], [], NOW) == decide.NOTHING


@pytest.mark.parametrize(("parts", "groups"), [([P0], []), ([P0, P1], ["g"]), ([], ["g"]), ([], [])])
def test_adding_what_the_transaction_holds_writes_nothing(parts: list[TxnPartition],
                                                          groups: list[str]) -> None:
    assert decide.add(txn(S.ONGOING), PID, EPOCH, parts, groups, NOW) == Decision()


def test_adding_nothing_to_a_finished_id_starts_nothing() -> None:
    assert decide.add(txn(S.EMPTY), PID, EPOCH, [], [], NOW) == Decision()


@pytest.mark.parametrize("status", PREPARING)
def test_adding_while_preparing_asks_to_retry(status: TxnStatus) -> None:
    for parts, groups in (([P2], []), ([], ["h"]), ([P0], [])):
        assert decide.add(txn(status), PID, EPOCH, parts, groups, NOW) == \
            Decision(ErrorCode.CONCURRENT_TRANSACTIONS)


def test_known_partitions_only_for_the_current_producer_of_an_ongoing_transaction() -> None:
    current = txn(S.ONGOING)
    assert decide.known_partitions(current, PID, EPOCH) == {("t", 0), ("t", 1)}
    assert decide.known_partitions(current, PID, EPOCH - 1) == set()
    assert decide.known_partitions(current, PID + 1, EPOCH) == set()
    assert decide.known_partitions(None, PID, EPOCH) == set()
    for status in (*PREPARING, *FINISHED):
        assert decide.known_partitions(txn(status), PID, EPOCH) == set()


# ---- EndTxn ----------------------------------------------------------------------------

@pytest.mark.parametrize("commit", [True, False])
def test_ending_an_ongoing_transaction_prepares_it(commit: bool) -> None:
    current = txn(S.ONGOING)
    d = decide.end(current, PID, EPOCH, commit, NOW)
    assert d.error == ErrorCode.NONE
    assert d.write == replace(current, status=S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, updated_ms=NOW)
    assert d.write.epoch == EPOCH and d.write.partitions == current.partitions


@pytest.mark.parametrize(("status", "commit", "expected"), [
    # A retry of the same end: the prepared one is still being marked, the complete one succeeds.
    (S.PREPARE_COMMIT, True, ErrorCode.CONCURRENT_TRANSACTIONS),
    (S.PREPARE_ABORT, False, ErrorCode.CONCURRENT_TRANSACTIONS),
    (S.COMPLETE_COMMIT, True, ErrorCode.NONE),
    (S.COMPLETE_ABORT, False, ErrorCode.NONE),
    # The other end than the one prepared or done.
    (S.PREPARE_COMMIT, False, ErrorCode.INVALID_TXN_STATE),
    (S.PREPARE_ABORT, True, ErrorCode.INVALID_TXN_STATE),
    (S.COMPLETE_COMMIT, False, ErrorCode.INVALID_TXN_STATE),
    (S.COMPLETE_ABORT, True, ErrorCode.INVALID_TXN_STATE),
    # Nothing begun: committing it is an error, aborting it a no-op.
    (S.EMPTY, True, ErrorCode.INVALID_TXN_STATE),
    (S.EMPTY, False, ErrorCode.NONE),
])
def test_ending_outside_an_ongoing_transaction(status: TxnStatus, commit: bool, expected: ErrorCode) -> None:
    assert decide.end(txn(status), PID, EPOCH, commit, NOW) == Decision(expected)


# ---- expiry and completion -------------------------------------------------------------

def test_an_ongoing_transaction_expires_at_its_deadline_with_the_epoch_bumped() -> None:
    current = txn(S.ONGOING, start_ms=NOW)
    assert decide.deadline(current) == NOW + TIMEOUT
    assert decide.expire(current, NOW + TIMEOUT - 1) is None
    expired = decide.expire(current, NOW + TIMEOUT)
    assert expired == replace(current, epoch=EPOCH + 1, status=S.PREPARE_ABORT, updated_ms=NOW + TIMEOUT)
    # Its producer is told INVALID_PRODUCER_EPOCH and may re-initialise with the old epoch.
    assert decide.end(expired, PID, EPOCH, True, NOW) == Decision(ErrorCode.INVALID_PRODUCER_EPOCH)


@pytest.mark.parametrize("status", [s for s in S if s != S.ONGOING])
def test_only_ongoing_transactions_expire(status: TxnStatus) -> None:
    current = txn(status, start_ms=0)
    assert decide.expire(current, NOW * 100) is None
    assert decide.deadline(current) is None


def test_expiry_at_the_last_epoch_cannot_bump_it() -> None:
    expired = decide.expire(txn(S.ONGOING, epoch=MAX_EPOCH - 1, start_ms=0), NOW)
    assert expired is not None and expired.epoch == MAX_EPOCH - 1 and expired.status == S.PREPARE_ABORT


@pytest.mark.parametrize(("status", "done"), [(S.PREPARE_COMMIT, S.COMPLETE_COMMIT),
                                              (S.PREPARE_ABORT, S.COMPLETE_ABORT)])
def test_completion_waits_for_every_marker(status: TxnStatus, done: TxnStatus) -> None:
    current = txn(status)
    every = {partition_target(P0.color), partition_target(P1.color), group_target("g")}
    for missing in every:
        assert decide.complete(current, {missing}, NOW) is None
    finished = decide.complete(current, set(), NOW)
    assert finished == replace(current, status=done, updated_ms=NOW, start_ms=-1, partitions=(), groups=())
    assert finished.epoch == EPOCH and finished.number == NUMBER


@pytest.mark.parametrize("status", [S.EMPTY, S.ONGOING, S.COMPLETE_COMMIT, S.COMPLETE_ABORT])
def test_only_preparing_transactions_complete(status: TxnStatus) -> None:
    assert decide.complete(txn(status), set(), NOW) is None


# ---- a producer's whole life -------------------------------------------------------------

def test_two_transactions_then_a_zombie_is_fenced_by_a_new_instance() -> None:
    d = decide.init_producer_id(None, "tx", TIMEOUT, -1, -1, 1, 0)
    state = d.write
    assert state is not None
    for number, commit in ((1, True), (2, False)):
        state = decide.add(state, 1, 0, [P0], [], 10).write
        assert state is not None and (state.status, state.number) == (S.ONGOING, number)
        state = decide.end(state, 1, 0, commit, 20).write
        assert state is not None and state.status == (S.PREPARE_COMMIT if commit else S.PREPARE_ABORT)
        state = decide.complete(state, set(), 30)
        assert state is not None and state.status == (S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT)
    state = decide.add(state, 1, 0, [P0], [], 40).write  # the old instance begins a third one
    assert state is not None
    d = decide.init_producer_id(state, "tx", TIMEOUT, -1, -1, None, 50)  # a new instance
    assert d.error == ErrorCode.CONCURRENT_TRANSACTIONS and d.write is not None
    state = d.write
    # The abort that fences looks like a timeout's (epoch + 1, PrepareAbort): the old instance
    # is told INVALID_PRODUCER_EPOCH, abortable, not PRODUCER_FENCED.
    assert decide.end(state, 1, 0, True, 60).error == ErrorCode.INVALID_PRODUCER_EPOCH
    assert decide.add(state, 1, 0, [P1], [], 60).error == ErrorCode.INVALID_PRODUCER_EPOCH
    state = decide.complete(state, set(), 70)
    assert state is not None and state.status == S.COMPLETE_ABORT
    d = decide.init_producer_id(state, "tx", TIMEOUT, -1, -1, None, 80)  # the new instance's retry
    assert d.error == ErrorCode.NONE and d.write is not None and d.write.epoch == 2
    state = d.write
    for epoch in (0, 1):
        assert decide.add(state, 1, epoch, [P0], [], 90).error == ErrorCode.PRODUCER_FENCED
        # Its KIP-360 re-initialisation with the old epoch is fenced too, once the new one is there.
        assert decide.init_producer_id(state, "tx", TIMEOUT, 1, epoch, None, 90).error == \
            ErrorCode.PRODUCER_FENCED
