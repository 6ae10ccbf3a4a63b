"""Per-partition index of batch timestamps: ListOffsets by time, max timestamp, retention.

Kafka keeps a time index on disk; here the gateway keeps one in memory, filled
from batches it appends itself and, for the rest, by scanning batch headers from
the log. The log is the only source of truth, so after a restart (or for
batches another gateway appended) a scan rebuilds exactly the same index.
Only batch headers are read while indexing; a batch is decoded only to find the
exact record inside the one batch a lookup lands on. Each retention pass drops the
indexes of partitions whose topic was deleted.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from flexlog.core import record_batch
from flexlog.core.client import FlexLogClient
from flexlog.core.registry import ColorInfo

SCAN_BYTES = 4 << 20
# Batches this gateway appended beyond the index's end, kept until the index reaches them.
# Beyond this many the index is far behind, and a scan reads the rest instead.
MAX_NOTED_AHEAD = 1024


@dataclass
class PartitionIndex:
    """Batches of one partition in SN order from the log start."""

    sns: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    max_ts: list[int] = field(default_factory=list)
    # Running maximum of max_ts: monotone, so the first batch reaching a time is a bisection.
    cummax: list[int] = field(default_factory=list)
    upto: int = 0  # every batch below this SN is indexed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # start SN -> (end, size, max_ts) of batches appended here that lie beyond upto: landed
    # while a scan held the lock, or after a gap another writer's batch fills.
    ahead: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def add(self, sn: int, end: int, size: int, max_ts: int) -> None:
        self.sns.append(sn)
        self.ends.append(end)
        self.sizes.append(size)
        self.max_ts.append(max_ts)
        self.cummax.append(max(max_ts, self.cummax[-1]) if self.cummax else max_ts)
        self.upto = end

    def note(self, sn: int, end: int, size: int, max_ts: int) -> None:
        """A batch appended here: indexed once every SN below it is."""
        if end > self.upto and len(self.ahead) < MAX_NOTED_AHEAD:
            self.ahead[sn] = (end, size, max_ts)

    def take_noted(self) -> None:
        """Index the noted batches that continue the index."""
        while (batch := self.ahead.pop(self.upto, None)) is not None:
            self.add(self.upto, *batch)

    def forget_passed(self) -> None:
        """Drop noted batches a scan indexed itself (they start below the index's end)."""
        if self.ahead:
            self.ahead = {sn: batch for sn, batch in self.ahead.items() if sn >= self.upto}

    def drop_below(self, log_start: int) -> None:
        """Forget batches that trimming removed entirely."""
        keep = bisect.bisect_right(self.ends, log_start)
        if keep:
            del self.sns[:keep], self.ends[:keep], self.sizes[:keep], self.max_ts[:keep]
            del self.cummax[:keep]
            running = None
            for i, ts in enumerate(self.max_ts):
                running = ts if running is None else max(running, ts)
                self.cummax[i] = running
        if self.upto < log_start:
            self.upto = log_start

    def first_reaching(self, timestamp: int) -> int | None:
        """Position of the first batch holding a record with a time >= timestamp."""
        pos = bisect.bisect_left(self.cummax, timestamp)
        return pos if pos < len(self.cummax) else None

    def newest(self) -> int | None:
        """Position of the first batch with the largest timestamp."""
        if not self.max_ts:
            return None
        return self.max_ts.index(self.cummax[-1])


class TimestampIndex:
    def __init__(self, client: FlexLogClient, log_start: Callable[[ColorInfo, int], int]) -> None:
        """log_start(color, physical log start): where the partition starts for Kafka clients
        (an ordered topic's partition may start above its color, gateway/partition_starts.py)."""
        self.client = client
        self._log_start = log_start
        self._parts: dict[int, PartitionIndex] = {}

    def part(self, color_id: int) -> PartitionIndex:
        index = self._parts.get(color_id)
        if index is None:
            index = self._parts[color_id] = PartitionIndex()
        return index

    def note(self, color: ColorInfo, sn: int, batch: bytes, start: bool = False) -> None:
        """Record a batch this gateway just appended, so no scan has to read it back.

        Indexed at once when it extends the index, otherwise when the index reaches it: a
        scan running now (it holds the lock) or filling a gap below it takes it then. A
        partition of an ordered topic shares its SNs with the others, so its batches rarely
        continue its index; there only one that does is taken.

        A partition without an index gets one from its first batch (SN 0) when the caller
        says start (retention trims that index from then on): nothing lies below to scan, so
        a new topic's first seconds are not read back by the first retention pass."""
        index = self._parts.get(color.id)
        if index is None and start and sn == 0 and not color.family:
            index = self.part(color.id)
        if index is None or (color.family and (index.upto != sn or index.lock.locked())):
            return
        header = record_batch.parse_header(batch)
        index.note(sn, sn + header.records_count, len(batch), header.max_timestamp)
        if not index.lock.locked():
            index.take_noted()

    def drop_deleted(self) -> None:
        """Forget the indexes of partitions whose color is gone: their topic was deleted (here
        or through another gateway), and a new topic of the same name gets new colors."""
        live = self.client.registry.by_id
        for color_id in [c for c in self._parts if c not in live]:
            del self._parts[color_id]

    async def refresh(self, color: ColorInfo) -> tuple[PartitionIndex, int, int]:
        """The index brought up to the current tail; also returns (log start, tail)."""
        index = self.part(color.id)
        async with index.lock:
            log_start, tail = await self.client.state(color)
            log_start = self._log_start(color, log_start)
            index.drop_below(log_start)
            index.take_noted()
            while index.upto < tail:
                res = await self.client.read_range(color, index.upto, SCAN_BYTES)
                if not res.entries:
                    if color.family and res.tail > index.upto:
                        # A partition of an ordered topic: [upto, tail) holds only other
                        # partitions' records, and the read stopped there to answer.
                        index.upto = res.tail
                        continue
                    break
                for entry in res.entries:
                    if entry.end <= index.upto:
                        continue
                    if record_batch.is_fill(entry.payload):
                        # A fill marker holds no record: indexed, it would stand for a batch
                        # retention never expires and hold a quiet ordered partition's
                        # family storage forever (gateway/retention.py).
                        index.upto = entry.end
                        continue
                    header = record_batch.parse_header(entry.payload)
                    index.add(entry.sn, entry.end, len(entry.payload), header.max_timestamp)
                index.take_noted()
            index.forget_passed()
        return index, log_start, tail

    async def offset_for_time(self, color: ColorInfo, timestamp: int) -> tuple[int, int]:
        """(offset, timestamp) of the first record with a time >= timestamp, or (-1, -1)."""
        index, log_start, _ = await self.refresh(color)
        first = index.first_reaching(timestamp)
        if first is None:
            return -1, -1
        # Normally the first candidate batch answers; a later one only when trimming cut
        # into it below the matching records.
        for pos in range(first, len(index.sns)):
            if index.max_ts[pos] < timestamp:
                continue
            entry = await self.client.read_entry(index.sns[pos], color)
            for rec in record_batch.decode(entry.payload):
                ts = rec.timestamp_ms if rec.timestamp_ms is not None else -1
                if rec.offset >= log_start and ts >= timestamp:
                    return rec.offset, ts
        return -1, -1

    async def max_timestamp(self, color: ColorInfo) -> tuple[int, int]:
        """(offset, timestamp) of the first record carrying the partition's largest time."""
        index, log_start, _ = await self.refresh(color)
        pos = index.newest()
        if pos is None:
            return -1, -1
        entry = await self.client.read_entry(index.sns[pos], color)
        best = (-1, -1)
        for rec in record_batch.decode(entry.payload):
            ts = rec.timestamp_ms if rec.timestamp_ms is not None else -1
            if rec.offset >= log_start and ts > best[1]:
                best = (rec.offset, ts)
        return best
