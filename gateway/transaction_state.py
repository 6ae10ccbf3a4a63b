"""The fold of ``__transaction_state``: every transactional id's state, markers done, aborted ranges.

Three kinds of record live in the color (JSON, one per append):

- ``txn``: the whole state of one transactional id, written only by its
  coordinator gateway. The record with the highest SN wins.
- ``marker``: a partition leader (or a group's coordinator, for the offsets a
  transaction committed) has written the transaction's end marker there. For
  an aborted transaction on a partition it also keeps the aborted range
  ``[first, offset]`` that read_committed fetches report.
- ``snapshot``: everything folded up to ``upto``, after which the log is trimmed.

Every record says everything about what it covers, so the fold takes them in
any order and twice, as ``committed_offsets`` does: a gateway may apply its own
record before a sync reaches it, and a snapshot may race records written
meanwhile.

A partition's *first* offset for a transaction is the partition's tail when the
coordinator added it: the producer sends nothing there before the add is
answered, and its previous transaction's marker is already in place, so no batch
of that producer lies between first and the transaction's own batches.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("flexlog.gateway.transactions")

# Kafka's transactional.id.expiration.ms: an idle id is forgotten after a week.
ID_EXPIRATION_MS = 7 * 24 * 3600 * 1000


class TxnStatus(enum.Enum):
    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"

    @property
    def open(self) -> bool:
        """Records of the transaction may still be unstable."""
        return self in (TxnStatus.ONGOING, TxnStatus.PREPARE_COMMIT, TxnStatus.PREPARE_ABORT)

    @property
    def preparing(self) -> bool:
        return self in (TxnStatus.PREPARE_COMMIT, TxnStatus.PREPARE_ABORT)


@dataclass(frozen=True)
class TxnPartition:
    topic: str
    partition: int
    color: int  # the partition's color id: a topic deleted and created again is another one
    first: int  # the partition's tail when it joined the transaction


@dataclass(frozen=True)
class Txn:
    """One transactional id's state; ``number`` counts its transactions (markers name it)."""

    txn_id: str
    producer_id: int
    epoch: int
    status: TxnStatus
    number: int
    timeout_ms: int
    start_ms: int  # when the current transaction began (-1: none)
    updated_ms: int
    partitions: tuple[TxnPartition, ...] = ()
    groups: tuple[str, ...] = ()
    sn: int = -1  # SN of the record that wrote it

    def record(self) -> dict[str, Any]:
        return {"op": "txn", "id": self.txn_id, "pid": self.producer_id, "epoch": self.epoch,
                "status": self.status.value, "number": self.number, "timeout_ms": self.timeout_ms,
                "start_ms": self.start_ms, "updated_ms": self.updated_ms,
                "partitions": [[p.topic, p.partition, p.color, p.first] for p in self.partitions],
                "groups": list(self.groups)}

    @staticmethod
    def from_record(sn: int, event: dict[str, Any]) -> Txn:
        return Txn(str(event["id"]), int(event["pid"]), int(event["epoch"]),
                   TxnStatus(event["status"]), int(event["number"]), int(event["timeout_ms"]),
                   int(event["start_ms"]), int(event["updated_ms"]),
                   tuple(TxnPartition(str(t), int(p), int(c), int(f)) for t, p, c, f in event["partitions"]),
                   tuple(str(g) for g in event["groups"]), sn)


def partition_target(color: int) -> str:
    return f"c:{color}"


def group_target(group: str) -> str:
    return f"g:{group}"


def targets(txn: Txn) -> set[str]:
    """Where the transaction's end must be marked: its partitions and its groups' offsets."""
    return {partition_target(p.color) for p in txn.partitions} | {group_target(g) for g in txn.groups}


class Aborted(tuple[int, int, int]):
    """(producer id, first offset, marker offset) of an aborted transaction on one partition."""

    @property
    def producer_id(self) -> int:
        return self[0]

    @property
    def first(self) -> int:
        return self[1]

    @property
    def last(self) -> int:
        return self[2]


@dataclass
class TransactionState:
    txns: dict[str, Txn] = field(default_factory=dict)
    # (transactional id, producer id, transaction number, target) whose end marker is written.
    # The producer id tells apart an id forgotten after its expiry and initialised again: it
    # numbers its transactions from 1 again, under a new producer id.
    marked: set[tuple[str, int, int, str]] = field(default_factory=set)
    aborted: dict[int, set[Aborted]] = field(default_factory=dict)  # color id -> ranges
    applied: int = 0  # next SN to apply
    since_snapshot: int = 0
    # Derived from the above on demand, and dropped at every change: fetches and produces ask
    # these for every partition, the state changes once per transaction step.
    _stable: dict[int, int] | None = field(default=None, repr=False)
    _writable: dict[tuple[int, int], set[int]] | None = field(default=None, repr=False)

    # ---- the fold -----------------------------------------------------------------

    def apply(self, sn: int, value: bytes | None, *, advance: bool = True) -> None:
        """Fold the record at sn; advance=False folds it out of turn (a sync reads it later)."""
        if advance:
            self.applied = max(self.applied, sn + 1)
        self._stable = self._writable = None
        try:
            event = json.loads(value or b"")
            op = event["op"]
            if op == "txn":
                self._merge(Txn.from_record(sn, event))
                self.since_snapshot += advance
            elif op == "marker":
                self._mark(event)
                self.since_snapshot += advance
            elif op == "snapshot":
                for row in event["txns"]:
                    self._merge(Txn.from_record(int(row["sn"]), row))
                for txn_id, pid, number, target in event["marked"]:
                    self.marked.add((str(txn_id), int(pid), int(number), str(target)))
                for color, pid, first, last in event["aborted"]:
                    self.aborted.setdefault(int(color), set()).add(Aborted((int(pid), int(first), int(last))))
                self.since_snapshot = 0
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed transaction record at SN %d", sn)

    def _merge(self, txn: Txn) -> None:
        current = self.txns.get(txn.txn_id)
        if current is None or txn.sn > current.sn:
            self.txns[txn.txn_id] = txn

    def _mark(self, event: dict[str, Any]) -> None:
        txn_id, pid, number = str(event["id"]), int(event["pid"]), int(event["number"])
        if "group" in event:
            self.marked.add((txn_id, pid, number, group_target(str(event["group"]))))
            return
        color = int(event["color"])
        self.marked.add((txn_id, pid, number, partition_target(color)))
        if not event["commit"]:
            self.aborted.setdefault(color, set()).add(
                Aborted((int(event["pid"]), int(event["first"]), int(event["offset"]))))

    # ---- what readers and writers ask ---------------------------------------------------

    def is_marked(self, txn: Txn, target: str) -> bool:
        return (txn.txn_id, txn.producer_id, txn.number, target) in self.marked

    def unmarked(self, txn: Txn) -> set[str]:
        return {t for t in targets(txn) if not self.is_marked(txn, t)}

    def stable_before(self, color: int) -> int | None:
        """The partition's last stable offset bound: the first offset of its oldest open
        transaction whose marker is not written yet; None when it has none."""
        if self._stable is None:
            self._stable = {}
            for txn in self.txns.values():
                if txn.status.open:
                    for p in txn.partitions:
                        if not self.is_marked(txn, partition_target(p.color)):
                            self._stable[p.color] = min(p.first, self._stable.get(p.color, p.first))
        return self._stable.get(color)

    def aborted_between(self, color: int, start: int, end: int) -> list[Aborted]:
        """Aborted transactions on the partition that overlap the offsets [start, end)."""
        return sorted(a for a in self.aborted.get(color, ()) if a.last >= start and a.first < end)

    def holds_group(self, txn_id: str, producer_id: int, epoch: int, group: str) -> bool:
        """Whether the producer's ongoing transaction added the group (TxnOffsetCommit may go on)."""
        txn = self.txns.get(txn_id)
        return txn is not None and (txn.producer_id, txn.epoch) == (producer_id, epoch) \
            and txn.status == TxnStatus.ONGOING and group in txn.groups

    def ongoing(self, color: int, producer_id: int, epoch: int) -> bool:
        """Whether the producer's current transaction may still write to the partition."""
        if self._writable is None:
            self._writable = {}
            for t in self.txns.values():
                if t.status == TxnStatus.ONGOING:
                    self._writable.setdefault((t.producer_id, t.epoch), set()).update(
                        p.color for p in t.partitions)
        return color in self._writable.get((producer_id, epoch), ())

    def epoch_of(self, producer_id: int) -> int | None:
        return next((t.epoch for t in self.txns.values() if t.producer_id == producer_id), None)

    def preparing(self) -> list[Txn]:
        return [t for t in self.txns.values() if t.status.preparing]

    # ---- compaction ------------------------------------------------------------------

    def prune(self, log_starts: dict[int, int], now_ms: int) -> None:
        """Forget ids idle past their expiry, markers of finished transactions, and aborted
        ranges whose marker left the partition (log_starts names every color that exists)."""
        self._stable = self._writable = None
        self.txns = {k: t for k, t in self.txns.items()
                     if t.status.open or now_ms - t.updated_ms < ID_EXPIRATION_MS}
        completing = {(t.txn_id, t.producer_id, t.number) for t in self.txns.values() if t.status.open}
        self.marked = {m for m in self.marked if m[:3] in completing}
        self.aborted = {c: kept for c, ranges in self.aborted.items() if c in log_starts
                        if (kept := {a for a in ranges if a.last >= log_starts[c]})}

    def snapshot(self) -> dict[str, Any]:
        return {"op": "snapshot", "upto": self.applied,
                "txns": [{**t.record(), "sn": t.sn} for t in self.txns.values()],
                "marked": [list(m) for m in sorted(self.marked)],
                "aborted": [[c, *a] for c, ranges in sorted(self.aborted.items()) for a in sorted(ranges)]}
