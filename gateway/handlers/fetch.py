"""Fetch (1), versions 4-17: range reads with long polling woken by appends.

v13+ name topics by id (an unknown id gets UNKNOWN_TOPIC_ID); v15's replica
state and v17's directory ids concern followers, which the gateway has none of.
A partition sent to a gateway that does not lead it gets NOT_LEADER_OR_FOLLOWER
with the leader named (v12+), and v16+ adds that leader's endpoint (KIP-951),
so the client re-routes without a Metadata round trip.

With isolation_level READ_COMMITTED nothing at or past a partition's last
stable offset is returned, and the aborted transactions among what is returned
are listed (``gateway/transactions.py``); a consumer skips their batches.

Every partition is read at once; when the answer is short of min_bytes and the
client allows a wait, the empty partitions are read again with a replica-side
wait, so the first append to any of them ends the poll within a round trip
instead of at max_wait_ms. Limits follow KIP-74: the first non-empty partition
gets at least one whole batch, later ones only what fits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from flexlog.core import record_batch
from flexlog.core.client import RangeResult
from flexlog.core.errors import FlexLogError, Trimmed
from flexlog.core.registry import ColorInfo
from flexlog.core.storage import StoredEntry
from flexlog.gateway import authz, offsets_topic
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

MIN_WAIT_MS = 1
TRIM_RACE_TRIES = 3  # reads of an ordered partition whose family is trimmed meanwhile
READ_COMMITTED = 1
MAX_GAP_BATCH = (1 << 31) - 1  # a batch covers at most this many offsets (lastOffsetDelta)


TOPIC_IDS_FROM_VERSION = 13
NODE_ENDPOINTS_FROM_VERSION = 16
NO_TOPIC_ID = bytes(16)


@dataclass
class _Partition:
    topic: str | None  # None: a v13+ topic id that names no topic
    index: int
    offset: int
    max_bytes: int
    topic_id: bytes = NO_TOPIC_ID  # v13+ only
    color: ColorInfo | None = None
    error: ErrorCode = ErrorCode.NONE
    result: RangeResult | None = None
    batches: list[bytes] = field(default_factory=list)
    derived: bool = False  # a partition of __consumer_offsets, made from the commits' color
    committed: bool = False  # isolation_level READ_COMMITTED: nothing at or past the LSO
    stable: int = -1  # the last stable offset, for a read_committed partition
    held: bool = False  # records were there but all past the LSO: wait for a marker, not an append

    def size(self) -> int:
        return sum(len(b) for b in self.batches)


async def _resolve(broker: Broker, part: _Partition) -> None:
    if part.topic is None:
        part.error = ErrorCode.UNKNOWN_TOPIC_ID
        return
    if not authz.topic_allowed(broker, Operation.READ, part.topic):
        part.error = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        return
    part.derived = part.topic == offsets_topic.TOPIC
    topic = None if part.derived else await broker.topics.lookup(part.topic)
    partitions = offsets_topic.PARTITIONS if part.derived else topic.partitions if topic else 0
    if not 0 <= part.index < partitions:
        part.error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return
    if not broker.leads(part.index):
        # The client re-reads Metadata and fetches from the leader gateway.
        part.error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        return
    try:
        if part.derived:
            await broker.groups.offsets.open()
            part.color = broker.groups.offsets.log.color
        else:
            part.color = await broker.topics.color(part.topic, part.index)
    except FlexLogError as exc:
        part.error = kafka_error(exc)


async def _read_from(broker: Broker, color: ColorInfo, offset: int, max_bytes: int,
                     wait_ms: int) -> RangeResult:
    start = offset
    for _ in range(TRIM_RACE_TRIES):
        try:
            return await broker.client.read_range(color, start, max_bytes, wait_ms=wait_ms)
        except Trimmed:
            log_start, _ = await broker.client.state(color)
            if not broker.partition_starts.fetchable(color, log_start) <= offset < log_start:
                raise
            # An ordered topic's partition whose family's storage starts past the offset,
            # where the partition keeps nothing (gateway/partition_starts.py): read on from
            # there, again if the family was trimmed further in between.
            start = log_start
    return await broker.client.read_range(color, start, max_bytes, wait_ms=wait_ms)


async def _read(broker: Broker, part: _Partition, wait_ms: int = 0) -> None:
    if part.color is None:
        return
    try:
        if part.derived:
            # Offsets there are not SNs of the color: neither log_starts nor fills apply.
            part.result = await offsets_topic.read(broker.client, part.color, part.index,
                                                   part.offset, max(part.max_bytes, 1), wait_ms)
            if not part.result.log_start <= part.offset <= part.result.tail:
                part.error = ErrorCode.OFFSET_OUT_OF_RANGE
            return
        res = await _read_from(broker, part.color, part.offset, max(part.max_bytes, 1), wait_ms)
    except FlexLogError as exc:
        part.error = kafka_error(exc)
        return
    fetchable = broker.partition_starts.fetchable(part.color, res.log_start)
    # An ordered topic's partition may start above its color (gateway/partition_starts.py):
    # below that start the partition answers as if trimmed, whatever the family still stores.
    res = res._replace(log_start=broker.partition_starts.start(part.color, res.log_start))
    broker.log_starts[part.color.id] = res.log_start
    if not fetchable <= part.offset <= res.tail:
        part.error = ErrorCode.OFFSET_OUT_OF_RANGE
    entries = [e for e in res.entries if not record_batch.is_fill(e.payload)]
    if res.entries and not entries:
        # Only fill markers (SNs ordered and lost, docs/reliability.md): consumers skip the
        # gap as after compaction, so answer what follows it, waiting for it as asked.
        try:
            res = await broker.client.read_range(part.color, res.entries[-1].end,
                                                 max(part.max_bytes, 1), wait_ms=wait_ms)
        except FlexLogError as exc:
            part.error = kafka_error(exc)
            return
        entries = [e for e in res.entries if not record_batch.is_fill(e.payload)]
    if not entries and part.color.family and res.tail > part.offset:
        # A partition of an ordered topic (docs/ordering.md): [offset, tail) holds other
        # partitions' records only. A control batch covering it, its marker at its last
        # offset, moves the consumer on, so its position, commits and lag reach the high
        # watermark instead of waiting below it until this partition's next record.
        count = min(res.tail - part.offset, MAX_GAP_BATCH)
        entries = [StoredEntry(part.offset, count, record_batch.gap(part.offset, count))]
    if part.committed:
        part.stable = broker.transactions.last_stable(part.color.id, res.tail)
        part.held = bool(entries) and entries[0].sn >= part.stable
        entries = [e for e in entries if e.sn < part.stable]
    part.result = res._replace(entries=entries)


def _fill(parts: list[_Partition], max_bytes: int) -> int:
    """Choose the batches each partition returns under the KIP-74 limits; returns the total."""
    total = 0
    for part in parts:
        part.batches = []
        if part.error or part.result is None:
            continue
        used = 0
        for entry in part.result.entries:
            size = len(entry.payload)
            first_overall = total == 0 and used == 0
            if not first_overall and (used + size > part.max_bytes or total + used + size > max_bytes):
                break
            part.batches.append(entry.payload)
            used += size
        total += used
    return total


def _wait_ready(parts: list[_Partition]) -> list[_Partition]:
    """Partitions worth a wait: readable, no error, nothing to return at the offset yet."""
    return [p for p in parts if p.color is not None and not p.error and p.result is not None
            and not p.result.entries]


async def _reread_held(broker: Broker, held: list[_Partition]) -> None:
    """The transaction state changed: read the held partitions again (their LSO may have moved)."""
    await broker.transactions.changed().wait()
    await asyncio.gather(*(_read(broker, p) for p in held))


async def _long_poll(broker: Broker, parts: list[_Partition], deadline: float) -> None:
    """Wait until any idle partition gets data (or the deadline); then that data is in parts.

    An idle partition waits at the replicas for an append; a held one (records past
    its LSO only) waits for the transaction state to change instead, which the
    replicas would not signal.
    """
    loop = asyncio.get_running_loop()
    idle = _wait_ready(parts)
    if not idle:
        return
    wait_ms = max(MIN_WAIT_MS, int((deadline - loop.time()) * 1000))
    held = [p for p in idle if p.held]
    waits = {asyncio.ensure_future(_read(broker, p, wait_ms)): [p] for p in idle if not p.held}
    if held:
        waits[asyncio.ensure_future(_reread_held(broker, held))] = held
    pending = set(waits)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                return
            if any(p.error or (p.result and p.result.entries) for d in done for p in waits[d]):
                return
            for d in done:
                if any(p.held for p in waits[d]):
                    # Still held after the change: wait for the next one.
                    again = [p for p in waits[d] if p.held]
                    task = asyncio.ensure_future(_reread_held(broker, again))
                    waits[task] = again
                    pending.add(task)
    finally:
        for task in pending:
            task.cancel()


async def _requested(broker: Broker, topics: list[Body], by_id: bool,
                     committed: bool) -> list[_Partition]:
    parts = []
    for t in topics:
        if by_id and t["topic_id"] == offsets_topic.TOPIC_ID:
            name, topic_id = offsets_topic.TOPIC, offsets_topic.TOPIC_ID
        elif by_id:
            topic = await broker.topics.lookup_id(t["topic_id"])
            name, topic_id = (topic.name if topic else None), t["topic_id"]
        else:
            name, topic_id = t["topic"], NO_TOPIC_ID
        parts += [_Partition(name, p["partition"], p["fetch_offset"], p["partition_max_bytes"], topic_id,
                             committed=committed and name != offsets_topic.TOPIC)
                  for p in t["partitions"]]
    return parts


def _partition_body(broker: Broker, part: _Partition) -> Body:
    res = part.result
    hwm = res.tail if res is not None and part.error != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION else -1
    stable = part.stable if part.committed and hwm >= 0 else hwm
    body: Body = {
        "partition_index": part.index, "error_code": part.error, "high_watermark": hwm,
        "last_stable_offset": stable, "log_start_offset": res.log_start if res is not None else -1,
        "aborted_transactions": _aborted(broker, part), "preferred_read_replica": -1,
        "records": b"".join(part.batches),
    }
    if part.error == ErrorCode.NOT_LEADER_OR_FOLLOWER:
        body["current_leader"] = {"leader_id": broker.leader(part.index), "leader_epoch": 0}
    return body


def _aborted(broker: Broker, part: _Partition) -> list[Body] | None:
    """read_committed: the aborted transactions among the returned batches (null otherwise)."""
    if not part.committed:
        return None
    if part.color is None or part.result is None or not part.batches:
        return []
    end = part.result.entries[len(part.batches) - 1].end
    return [{"producer_id": a.producer_id, "first_offset": a.first}
            for a in broker.transactions.state.aborted_between(part.color.id, part.offset, end)]


def _leader_endpoints(broker: Broker, parts: list[_Partition]) -> list[Body]:
    """KIP-951: where the leaders named in NOT_LEADER_OR_FOLLOWER answers are."""
    leaders = {broker.leader(p.index) for p in parts if p.error == ErrorCode.NOT_LEADER_OR_FOLLOWER}
    return [{"node_id": b.node_id, "host": b.host, "port": b.port, "rack": None}
            for b in broker.brokers if b.node_id in leaders]


@serves(ApiKey.FETCH, 4, 17)
async def handle_fetch(broker: Broker, request: Request) -> Body:
    body = request.body
    version = request.api_version
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, body["max_wait_ms"]) / 1000
    min_bytes = max(1, body["min_bytes"])
    max_bytes = body["max_bytes"]
    parts = await _requested(broker, body["topics"], version >= TOPIC_IDS_FROM_VERSION,
                             body.get("isolation_level", 0) == READ_COMMITTED)
    await asyncio.gather(*(_resolve(broker, p) for p in parts))
    await asyncio.gather(*(_read(broker, p) for p in parts))
    total = _fill(parts, max_bytes)
    while (total < min_bytes and loop.time() < deadline
           and not any(p.error for p in parts) and _wait_ready(parts)):
        await _long_poll(broker, parts, deadline)
        total = _fill(parts, max_bytes)
        if total < min_bytes and loop.time() < deadline:
            # min_bytes above one batch: gather what every partition has now, then wait again.
            await asyncio.gather(*(_read(broker, p) for p in parts if not p.error))
            total = _fill(parts, max_bytes)
    responses: list[Body] = []
    by_topic: dict[tuple[str | None, bytes], list[Body]] = {}
    for part in parts:
        key = (part.topic, part.topic_id)
        if key not in by_topic:
            by_topic[key] = []
            responses.append({"topic": part.topic, "topic_id": part.topic_id, "partitions": by_topic[key]})
        by_topic[key].append(_partition_body(broker, part))
    answer: Body = {"throttle_time_ms": 0, "error_code": ErrorCode.NONE, "session_id": 0,
                    "responses": responses}
    if version >= NODE_ENDPOINTS_FROM_VERSION:
        answer["node_endpoints"] = _leader_endpoints(broker, parts)
    return answer
