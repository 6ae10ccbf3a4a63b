"""The transaction coordinator's decisions, pure: a request and the id's state in, a reply out.

Each decision returns the error code for the client and, when the state
changes, the new ``Txn`` to append to ``__transaction_state``; the caller
appends it before answering, so whatever a client was told survives a restart
of the coordinator. Time is passed in. The states and their order are Kafka's:

    Empty/Complete* --add--> Ongoing --EndTxn--> PrepareCommit/PrepareAbort
        --every marker written--> CompleteCommit/CompleteAbort

An ongoing transaction past its timeout, or one whose id another producer
initialises, is aborted with the epoch bumped, which fences the old producer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flexlog.gateway.protocol import ErrorCode
from flexlog.gateway.transaction_state import Txn, TxnPartition, TxnStatus

MAX_EPOCH = 2**15 - 1
MAX_TIMEOUT_MS = 900_000  # Kafka's transaction.max.timeout.ms default


@dataclass(frozen=True)
class Decision:
    error: ErrorCode = ErrorCode.NONE
    write: Txn | None = None  # the new state, to append before answering


NOTHING = Decision()


def _timed_out(txn: Txn, producer_id: int, epoch: int) -> bool:
    """The producer's transaction was aborted on timeout: it may abort and re-initialise."""
    return producer_id == txn.producer_id and epoch == txn.epoch - 1 \
        and txn.status in (TxnStatus.PREPARE_ABORT, TxnStatus.COMPLETE_ABORT)


def _fenced(txn: Txn, producer_id: int, epoch: int) -> ErrorCode | None:
    if producer_id != txn.producer_id:
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
    if _timed_out(txn, producer_id, epoch):
        # Abortable for the client (KIP-588): it re-initialises with its id and epoch.
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if epoch != txn.epoch:
        return ErrorCode.PRODUCER_FENCED
    return None


def init_producer_id(txn: Txn | None, txn_id: str, timeout_ms: int, producer_id: int, epoch: int,
                     new_producer_id: int | None, now_ms: int) -> Decision:
    """InitProducerId with a transactional id.

    producer_id/epoch are what the client passed (-1 unless it is re-initialising
    after an error, KIP-360); new_producer_id is a fresh id, needed when the id is
    new or its epoch is exhausted (None: ask again with one).
    """
    if not 0 < timeout_ms <= MAX_TIMEOUT_MS:
        return Decision(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
    if txn is None:
        if new_producer_id is None:
            return Decision(ErrorCode.NONE)
        return Decision(write=Txn(txn_id, new_producer_id, 0, TxnStatus.EMPTY, 0, timeout_ms, -1, now_ms))
    if producer_id >= 0 and (producer_id, epoch) != (txn.producer_id, txn.epoch) \
            and not _timed_out(txn, producer_id, epoch):
        return Decision(ErrorCode.PRODUCER_FENCED)
    if txn.status.preparing:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    if txn.status == TxnStatus.ONGOING:
        # Abort the old producer's transaction under a new epoch; the client retries until done.
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS, _abort(txn, now_ms))
    if txn.epoch + 1 >= MAX_EPOCH:
        if new_producer_id is None:
            return Decision(ErrorCode.NONE)
        return Decision(write=replace(txn, producer_id=new_producer_id, epoch=0, status=TxnStatus.EMPTY,
                                      timeout_ms=timeout_ms, start_ms=-1, updated_ms=now_ms,
                                      partitions=(), groups=()))
    return Decision(write=replace(txn, epoch=txn.epoch + 1, status=TxnStatus.EMPTY, timeout_ms=timeout_ms,
                                  start_ms=-1, updated_ms=now_ms, partitions=(), groups=()))


def needs_producer_id(txn: Txn | None) -> bool:
    """Whether init_producer_id will need a fresh producer id for this state."""
    return txn is None or (not txn.status.open and txn.epoch + 1 >= MAX_EPOCH)


def add(txn: Txn | None, producer_id: int, epoch: int, partitions: list[TxnPartition],
        groups: list[str], now_ms: int) -> Decision:
    """AddPartitionsToTxn (partitions) or AddOffsetsToTxn (one group)."""
    if txn is None:
        return Decision(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
    fenced = _fenced(txn, producer_id, epoch)
    if fenced is not None:
        return Decision(fenced)
    if txn.status.preparing:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    known = {(p.topic, p.partition) for p in txn.partitions} if txn.status.open else set()
    new_parts = tuple(p for p in partitions if (p.topic, p.partition) not in known)
    old_groups = txn.groups if txn.status.open else ()
    new_groups = tuple(g for g in groups if g not in old_groups)
    if not new_parts and not new_groups:
        return NOTHING
    if txn.status == TxnStatus.ONGOING:
        return Decision(write=replace(txn, partitions=txn.partitions + new_parts,
                                      groups=txn.groups + new_groups, updated_ms=now_ms))
    return Decision(write=replace(txn, status=TxnStatus.ONGOING, number=txn.number + 1, start_ms=now_ms,
                                  updated_ms=now_ms, partitions=new_parts, groups=new_groups))


def known_partitions(txn: Txn | None, producer_id: int, epoch: int) -> set[tuple[str, int]]:
    """Partitions the producer's ongoing transaction already holds (no tail needed for them)."""
    if txn is None or txn.status != TxnStatus.ONGOING or (txn.producer_id, txn.epoch) != (producer_id, epoch):
        return set()
    return {(p.topic, p.partition) for p in txn.partitions}


def end(txn: Txn | None, producer_id: int, epoch: int, commit: bool, now_ms: int) -> Decision:
    """EndTxn: commit or abort the ongoing transaction; a retry of a finished one succeeds."""
    if txn is None:
        return Decision(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
    fenced = _fenced(txn, producer_id, epoch)
    if fenced is not None:
        return Decision(fenced)
    done = TxnStatus.COMPLETE_COMMIT if commit else TxnStatus.COMPLETE_ABORT
    preparing = TxnStatus.PREPARE_COMMIT if commit else TxnStatus.PREPARE_ABORT
    if txn.status == TxnStatus.ONGOING:
        return Decision(write=replace(txn, status=preparing, updated_ms=now_ms))
    if txn.status == done:
        return NOTHING
    if txn.status == preparing:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    if txn.status == TxnStatus.EMPTY and not commit:
        # Nothing was added: aborting it is a no-op, as librdkafka expects.
        return NOTHING
    return Decision(ErrorCode.INVALID_TXN_STATE)


def _abort(txn: Txn, now_ms: int) -> Txn:
    """Abort under the next epoch, so the producer that began it is fenced."""
    return replace(txn, epoch=min(txn.epoch + 1, MAX_EPOCH - 1), status=TxnStatus.PREPARE_ABORT,
                   updated_ms=now_ms)


def expire(txn: Txn, now_ms: int) -> Txn | None:
    """An ongoing transaction past its timeout is aborted (and its producer fenced)."""
    if txn.status == TxnStatus.ONGOING and now_ms >= txn.start_ms + txn.timeout_ms:
        return _abort(txn, now_ms)
    return None


def deadline(txn: Txn) -> int | None:
    return txn.start_ms + txn.timeout_ms if txn.status == TxnStatus.ONGOING else None


def complete(txn: Txn, unmarked: set[str], now_ms: int) -> Txn | None:
    """A preparing transaction whose markers are all written is complete."""
    if not txn.status.preparing or unmarked:
        return None
    done = TxnStatus.COMPLETE_COMMIT if txn.status == TxnStatus.PREPARE_COMMIT else TxnStatus.COMPLETE_ABORT
    return replace(txn, status=done, updated_ms=now_ms, start_ms=-1, partitions=(), groups=())
