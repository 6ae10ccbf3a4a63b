"""Idempotent producers: per (producer id, partition) epoch and sequence checks, and duplicates.

``ProducerStates`` is pure: it sees batch headers and base offsets and says
whether a batch is new, a retry of one of the last five batches (answered with
the offset it got the first time, as Kafka does), or out of order.

Produce is pipelined (``docs/gateway.md``), so a batch is recorded when its
append is *submitted*, with a future of its base offset; the next batch of the
producer is checked against it at once. If the append then fails, the batch
is retracted and its exact sequence range may be retried even though later
batches already landed (the retry gets a later offset, as a retried batch of a
non-idempotent producer with several requests in flight would). The state is
not persisted: a gateway rebuilds it for a partition, before its first
idempotent append there, from the batch headers (producerId, producerEpoch,
baseSequence are in every RecordBatch) of the partition's last
``REBUILD_RECORDS`` offsets. A producer the scan does not find is accepted at
any sequence, like Kafka accepts a producer whose state expired.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from flexlog.core import record_batch
from flexlog.core.client import FlexLogClient
from flexlog.core.record_batch import BatchHeader, CorruptBatch
from flexlog.core.registry import ColorInfo
from flexlog.gateway.protocol import ErrorCode

NO_PRODUCER_ID = -1
KEPT_BATCHES = 5  # max.in.flight.requests.per.connection an idempotent producer may use
MAX_SEQUENCE = 2**31 - 1
REBUILD_RECORDS = 20_000
READ_BYTES = 1 << 20


def last_sequence(header: BatchHeader) -> int:
    # Sequences wrap from Int32.MAX to 0, as in Kafka.
    return (header.base_sequence + header.last_offset_delta) % (MAX_SEQUENCE + 1)


BaseOffset = int | asyncio.Future[int]


@dataclass
class ProducerEntry:
    epoch: int
    last_sequence: int
    # (first sequence, last sequence, base offset or its future) of the newest batches, oldest first.
    batches: deque[tuple[int, int, BaseOffset]] = field(default_factory=lambda: deque(maxlen=KEPT_BATCHES))
    # Sequence ranges whose append failed after later batches were already sent: retry allowed.
    retractions: set[tuple[int, int]] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    """APPEND: write it; a duplicate carries the base offset it was stored at; else an error."""

    error: ErrorCode = ErrorCode.NONE
    duplicate_of: BaseOffset | None = None


APPEND = Verdict()


class ProducerStates:
    def __init__(self) -> None:
        self.entries: dict[tuple[int, int], ProducerEntry] = {}  # (producer id, color id)

    def check(self, color_id: int, header: BatchHeader) -> Verdict:
        entry = self.entries.get((header.producer_id, color_id))
        if entry is None:
            return APPEND
        first, last = header.base_sequence, last_sequence(header)
        if header.producer_epoch < entry.epoch:
            return Verdict(ErrorCode.INVALID_PRODUCER_EPOCH)
        if header.producer_epoch > entry.epoch:
            # A bumped epoch (InitProducerId again) starts over at sequence 0.
            return APPEND if first == 0 else Verdict(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        for b_first, b_last, base_offset in entry.batches:
            if (b_first, b_last) == (first, last):
                return Verdict(duplicate_of=base_offset)
        if (first, last) in entry.retractions:
            return APPEND
        expected = 0 if entry.last_sequence == MAX_SEQUENCE else entry.last_sequence + 1
        if first != expected:
            return Verdict(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        return APPEND

    def record(self, color_id: int, header: BatchHeader, base_offset: BaseOffset) -> None:
        """Note a batch stored (or being stored) at base_offset, or found by a rebuild scan."""
        key = (header.producer_id, color_id)
        entry = self.entries.get(key)
        if entry is None or header.producer_epoch != entry.epoch:
            entry = self.entries[key] = ProducerEntry(header.producer_epoch, -1)
        first, last = header.base_sequence, last_sequence(header)
        if (first, last) in entry.retractions:
            entry.retractions.discard((first, last))
        else:
            entry.last_sequence = last
        entry.batches.append((first, last, base_offset))

    def retract(self, color_id: int, header: BatchHeader) -> None:
        """The batch's append failed: forget it, and let the producer retry exactly that range."""
        entry = self.entries.get((header.producer_id, color_id))
        if entry is None or entry.epoch != header.producer_epoch:
            return
        first, last = header.base_sequence, last_sequence(header)
        entry.batches = deque((b for b in entry.batches if (b[0], b[1]) != (first, last)),
                              maxlen=KEPT_BATCHES)
        if entry.last_sequence == last:
            entry.last_sequence = (first - 1) % (MAX_SEQUENCE + 1) if first else -1
        else:
            entry.retractions.add((first, last))


class Idempotence:
    """ProducerStates fed from this gateway's appends, rebuilt per partition from the log."""

    def __init__(self, client: FlexLogClient) -> None:
        self.client = client
        self.states = ProducerStates()
        self._loaded: set[int] = set()
        self._loading: dict[int, asyncio.Lock] = {}

    async def ensure_loaded(self, color: ColorInfo) -> None:
        """Rebuild the partition's producer states from its recent batches (once per gateway)."""
        if color.id in self._loaded:
            return
        async with self._loading.setdefault(color.id, asyncio.Lock()):
            if color.id not in self._loaded:
                await self._load(color)

    async def _load(self, color: ColorInfo) -> None:
        log_start, tail = await self.client.state(color)
        sn = max(log_start, tail - REBUILD_RECORDS)
        while sn < tail:
            res = await self.client.read_range(color, sn, READ_BYTES)
            if not res.entries:
                break
            for entry in res.entries:
                try:
                    header = record_batch.parse_header(entry.payload)
                except CorruptBatch:
                    continue
                # A transaction's end marker carries the producer's id but no sequence.
                if header.producer_id != NO_PRODUCER_ID and not header.is_control:
                    self.states.record(color.id, header, entry.sn)
            sn = res.entries[-1].end
        self._loaded.add(color.id)
