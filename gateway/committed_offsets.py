"""Committed consumer offsets in the FlexLog color ``__consumer_offsets``.

Every commit is one JSON record. The fold keeps, per (group, topic, partition),
the entry with the highest SN, so records may be applied in any order and twice
(a deletion is an entry too, a tombstone). That is what makes compaction safe
while other gateways keep committing: a snapshot record carries the whole state
of the gateway that wrote it, folded up to some SN ``upto``, and the log is then
trimmed before ``upto`` only; whoever reads the log from its new start applies
the commits after ``upto`` and the snapshot in whatever order they come and ends
in the same state.

Offsets a transaction commits (TxnOffsetCommit) are ``txn_commit`` records,
pending per (group, producer id) until a ``txn_end`` record of that producer
with a higher SN commits or drops them; committed, they count at the end
record's SN. An end record may be folded before a pending record it resolves
(a gateway folds its own records out of turn), so the fold keeps the few
latest ends of each producer to resolve such a late one.

Like ``__topics``, the color is owned by the root, so one sequencer orders all
commits, every gateway can read them, and they survive gateway restarts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any

from flexlog.core.client import FlexLogClient
from flexlog.core.config import ClusterConfig
from flexlog.core.errors import UnknownColor
from flexlog.core.event_log import EventLog, json_record

log = logging.getLogger("flexlog.gateway.offsets")

OFFSETS_COLOR = "__consumer_offsets"
MAX_METADATA_BYTES = 4096  # Kafka's offset.metadata.max.bytes
# Write a snapshot (and trim) once this many records follow the last one.
SNAPSHOT_EVERY_RECORDS = 10_000

Key = tuple[str, str, int]  # (group, topic, partition)
KEPT_ENDS = 8  # transaction ends kept per (group, producer) for pending records folded late


@dataclass(frozen=True)
class Committed:
    sn: int  # SN of the record that wrote it: the higher one wins
    offset: int
    metadata: str | None
    leader_epoch: int
    timestamp_ms: int
    deleted: bool = False
    # A transactional commit counts at its end record's SN; two commits of one partition in one
    # transaction then tie, and the later TxnOffsetCommit (its own SN here) wins.
    order: int = -1

    def row(self, key: Key) -> list[Any]:
        return [*key, self.sn, self.offset, self.metadata, self.leader_epoch, self.timestamp_ms,
                self.deleted]


class OffsetState:
    """The fold of ``__consumer_offsets``; pure, so tests drive it without a cluster."""

    def __init__(self) -> None:
        self.entries: dict[Key, Committed] = {}
        # (group, producer id) -> {key: the pending commit}, of a transaction not yet ended.
        self.pending: dict[tuple[str, int], dict[Key, Committed]] = {}
        # (group, producer id) -> [(SN, committed)] of its latest transaction ends, oldest first.
        self.ends: dict[tuple[str, int], list[tuple[int, bool]]] = {}
        self.applied = 0  # next SN to apply
        self.since_snapshot = 0  # records applied after the newest snapshot seen

    def _merge(self, key: Key, entry: Committed) -> None:
        current = self.entries.get(key)
        if current is None or (entry.sn, entry.order) > (current.sn, current.order):
            self.entries[key] = entry

    def apply(self, sn: int, value: bytes | None, *, advance: bool = True) -> None:
        """Fold the record at sn; advance=False folds it out of turn (a sync reads it later)."""
        if advance:
            self.applied = max(self.applied, sn + 1)
        try:
            event = json.loads(value or b"")
            op = event["op"]
            if op == "commit":
                ts = int(event["ts"])
                for topic, partition, offset, epoch, metadata in event["offsets"]:
                    self._merge((event["group"], topic, int(partition)),
                                Committed(sn, int(offset), metadata, int(epoch), ts))
                self.since_snapshot += advance
            elif op == "delete":
                ts = int(event["ts"])
                for topic, partition in event["partitions"]:
                    self._merge((event["group"], topic, int(partition)),
                                Committed(sn, -1, None, -1, ts, deleted=True))
                self.since_snapshot += advance
            elif op == "txn_commit":
                ts = int(event["ts"])
                group, pid = event["group"], int(event["pid"])
                for topic, partition, offset, epoch, metadata in event["offsets"]:
                    self._pend(group, pid, (group, topic, int(partition)),
                               Committed(sn, int(offset), metadata, int(epoch), ts))
                self.since_snapshot += advance
            elif op == "txn_end":
                self._end(event["group"], int(event["pid"]), sn, bool(event["commit"]))
                self.since_snapshot += advance
            elif op == "snapshot":
                for group, topic, p, e_sn, offset, metadata, epoch, ts, deleted in event["entries"]:
                    self._merge((group, topic, int(p)), Committed(int(e_sn), int(offset), metadata,
                                                                  int(epoch), int(ts), bool(deleted)))
                for group, pid, topic, p, e_sn, offset, metadata, epoch, ts in event.get("pending", []):
                    self._pend(group, int(pid), (group, topic, int(p)),
                               Committed(int(e_sn), int(offset), metadata, int(epoch), int(ts)))
                for group, pid, e_sn, commit in event.get("ends", []):
                    self._end(group, int(pid), int(e_sn), bool(commit))
                self.since_snapshot = 0
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed offsets record at SN %d", sn)

    def _pend(self, group: str, pid: int, key: Key, entry: Committed) -> None:
        later = [(e_sn, commit) for e_sn, commit in self.ends.get((group, pid), []) if e_sn > entry.sn]
        if later:
            # Its transaction already ended: resolve it as that end did.
            e_sn, commit = min(later)
            if commit:
                self._merge(key, dataclasses.replace(entry, sn=e_sn, order=entry.sn))
            return
        pending = self.pending.setdefault((group, pid), {})
        if key not in pending or entry.sn > pending[key].sn:
            pending[key] = entry

    def _end(self, group: str, pid: int, sn: int, commit: bool) -> None:
        ends = self.ends.setdefault((group, pid), [])
        if (sn, commit) in ends:
            return
        ends.append((sn, commit))
        ends.sort()
        del ends[:-KEPT_ENDS]
        pending = self.pending.get((group, pid), {})
        for key in [k for k, e in pending.items() if e.sn < sn]:
            entry = pending.pop(key)
            if commit:
                self._merge(key, dataclasses.replace(entry, sn=sn, order=entry.sn))
        if not pending:
            self.pending.pop((group, pid), None)

    def unstable(self, key: Key) -> bool:
        """Whether an open transaction holds a commit of this partition (OffsetFetch's
        require_stable answers UNSTABLE_OFFSET_COMMIT then)."""
        return any(key in p for (group, _), p in self.pending.items() if group == key[0])

    def get(self, key: Key) -> Committed | None:
        entry = self.entries.get(key)
        return None if entry is None or entry.deleted else entry

    def group_keys(self, group: str) -> list[Key]:
        return [k for k, e in self.entries.items() if k[0] == group and not e.deleted]

    def groups(self) -> set[str]:
        return {k[0] for k, e in self.entries.items() if not e.deleted}

    def snapshot(self, tombstones_after_ms: int) -> dict[str, Any]:
        """The snapshot record of the current state; tombstones older than the cut-off go.

        A tombstone only matters against a record older than itself arriving later,
        i.e. a snapshot written by a gateway lagging that far behind.
        """
        rows = [e.row(k) for k, e in self.entries.items()
                if not e.deleted or e.timestamp_ms >= tombstones_after_ms]
        pending = [[group, pid, k[1], k[2], *e.row(k)[3:8]]
                   for (group, pid), entries in self.pending.items() for k, e in entries.items()]
        ends = [[group, pid, e_sn, commit] for (group, pid), ends in self.ends.items()
                for e_sn, commit in ends]
        return {"op": "snapshot", "upto": self.applied, "entries": rows, "pending": pending, "ends": ends}


class OffsetStore:
    """Committed offsets as this gateway knows them, synced from the log on demand."""

    def __init__(self, client: FlexLogClient, config: ClusterConfig) -> None:
        self.client = client
        self.config = config
        self.state = OffsetState()
        self.log = EventLog(client, self.state, OFFSETS_COLOR)

    @property
    def opened(self) -> bool:
        return self.log.opened

    async def open(self) -> None:
        await self.log.open()

    async def sync(self) -> None:
        """Apply every record up to the current tail."""
        await self.log.sync()

    async def _append(self, event: dict[str, Any]) -> int:
        value = json_record(event)
        sn = await self.log.append(value, wait_applied=False)
        # The fold does not depend on order, so our own record counts at once; records
        # of other gateways before it are picked up by the next sync.
        self.state.apply(sn, value, advance=False)
        return sn

    async def commit(self, group: str, offsets: list[tuple[str, int, int, int, str | None]],
                     now_ms: int) -> None:
        """Store (topic, partition, offset, leader epoch, metadata) rows as one record."""
        await self._append({"op": "commit", "group": group, "ts": now_ms,
                            "offsets": [list(row) for row in offsets]})

    async def commit_pending(self, group: str, producer_id: int,
                             offsets: list[tuple[str, int, int, int, str | None]], now_ms: int) -> None:
        """TxnOffsetCommit: rows held until the producer's transaction ends."""
        await self._append({"op": "txn_commit", "group": group, "pid": producer_id, "ts": now_ms,
                            "offsets": [list(row) for row in offsets]})

    async def end_transaction(self, group: str, producer_id: int, commit: bool, now_ms: int) -> None:
        """Commit or drop the offsets the producer's transaction holds for the group."""
        await self._append({"op": "txn_end", "group": group, "pid": producer_id, "commit": commit,
                            "ts": now_ms})

    async def delete(self, group: str, keys: list[Key], now_ms: int) -> None:
        if keys:
            await self._append({"op": "delete", "group": group, "ts": now_ms,
                                "partitions": [[t, p] for _, t, p in keys]})

    async def group(self, record: dict[str, Any]) -> None:
        """Append a group-metadata record (op "group"), shown in the __consumer_offsets topic.

        The fold ignores it: membership is not recovered from the log (a restarted
        coordinator starts with no members), the record is there for Kafka tools.
        """
        await self._append({"op": "group", **record})

    async def compact(self, tombstones_after_ms: int) -> None:
        """Snapshot the live state and trim what the snapshot covers."""
        await self.sync()
        snapshot = self.state.snapshot(tombstones_after_ms)
        await self._append(snapshot)
        if snapshot["upto"] > 0:
            with contextlib.suppress(UnknownColor):
                await self.client.trim(snapshot["upto"] - 1, self.log.color)
