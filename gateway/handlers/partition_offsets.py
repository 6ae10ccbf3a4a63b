"""Offsets of a partition: ListOffsets (2), OffsetForLeaderEpoch (23), DeleteRecords (21).

Offsets are SNs: the earliest is the color's log start, the latest its tail
(Kafka's high watermark; for isolation_level READ_COMMITTED, the last stable
offset). DeleteRecords is a FlexLog trim, which moves the log start of every
replica; on an ordered topic's partition it moves the partition's logical log
start, and the family is trimmed once all its partitions moved past
(gateway/partition_starts.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flexlog.core.errors import FlexLogError
from flexlog.core.registry import ColorInfo
from flexlog.gateway import authz, offsets_topic
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.metadata import LEADER_EPOCH
from flexlog.gateway.handlers.registry import Body, serves
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4  # v8+, KIP-405: where the broker's local copy of the log starts
LATEST_TIERED = -5  # v9+, KIP-1005: the last offset in remote (tiered) storage
READ_COMMITTED = 1


class _PartitionFailed(Exception):
    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.name)
        self.code = code


async def _color(broker: Broker, operation: Operation, topic_name: str,
                 partition: int) -> ColorInfo:
    """The partition's color, if the principal may do operation on the topic and it exists."""
    if not authz.topic_allowed(broker, operation, topic_name):
        raise _PartitionFailed(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    topic = await broker.topics.lookup(topic_name)
    if topic is None or not 0 <= partition < topic.partitions:
        raise _PartitionFailed(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    try:
        return await broker.topics.color(topic_name, partition)
    except FlexLogError as exc:
        raise _PartitionFailed(kafka_error(exc)) from None


async def _per_partition(
    topics: list[Body], name_key: str,
    answer: Callable[[str, Body], Awaitable[Body]], error: Callable[[Body, ErrorCode], Body],
) -> list[Body]:
    """Answer every partition concurrently, keeping the request's order."""

    async def one(topic: str, part: Body) -> Body:
        try:
            return await answer(topic, part)
        except _PartitionFailed as exc:
            return error(part, exc.code)
        except FlexLogError as exc:
            return error(part, kafka_error(exc))

    jobs = [one(t[name_key], p) for t in topics for p in t["partitions"]]
    results = iter(await asyncio.gather(*jobs))
    return [{name_key: t[name_key], "partitions": [next(results) for _ in t["partitions"]]}
            for t in topics]


async def _derived_offsets(broker: Broker, part: Body) -> Body:
    """ListOffsets of a partition of __consumer_offsets: the commits' color, shifted.

    Without a timestamp index over it, a time lookup answers "no such record"
    (-1), as Kafka does past the last timestamp; consumers resetting to the
    earliest or latest offset are what monitoring tools need.
    """
    index = part["partition_index"]
    if not authz.topic_allowed(broker, Operation.DESCRIBE, offsets_topic.TOPIC):
        raise _PartitionFailed(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    if not 0 <= index < offsets_topic.PARTITIONS:
        raise _PartitionFailed(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if not broker.leads(index):
        raise _PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    offset = -1
    if part["timestamp"] in (LATEST, EARLIEST, EARLIEST_LOCAL):
        await broker.groups.offsets.open()
        log_start, tail = await broker.client.state(broker.groups.offsets.log.color)
        offset = (tail if part["timestamp"] == LATEST else log_start) << offsets_topic.OFFSET_SHIFT
    elif part["timestamp"] < LATEST_TIERED:
        raise _PartitionFailed(ErrorCode.INVALID_REQUEST)
    return {"partition_index": index, "error_code": ErrorCode.NONE, "timestamp": -1,
            "offset": offset, "leader_epoch": LEADER_EPOCH if offset >= 0 else -1}


@serves(ApiKey.LIST_OFFSETS, 1, 9)
async def handle_list_offsets(broker: Broker, request: Request) -> Body:
    version = request.api_version
    committed = request.body.get("isolation_level", 0) == READ_COMMITTED

    async def answer(topic: str, part: Body) -> Body:
        if topic == offsets_topic.TOPIC:
            return await _derived_offsets(broker, part)
        color = await _color(broker, Operation.DESCRIBE, topic, part["partition_index"])
        if not broker.leads(part["partition_index"]):
            raise _PartitionFailed(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        wanted = part["timestamp"]
        timestamp = -1
        if wanted in (LATEST, EARLIEST) or (wanted == EARLIEST_LOCAL and version >= 8):
            # Every tier of a FlexLog replica (PM, DRAM cache, SSD) is local: the whole log
            # is, so the local log starts where the log does, as in Kafka without remote storage.
            log_start, tail = await broker.client.state(color)
            log_start = broker.partition_starts.start(color, log_start)
            broker.log_starts[color.id] = log_start
            end = broker.transactions.last_stable(color.id, tail) if committed else tail
            offset = end if wanted == LATEST else log_start
        elif wanted == MAX_TIMESTAMP and version >= 7:
            offset, timestamp = await broker.timestamps.max_timestamp(color)
        elif wanted == LATEST_TIERED and version >= 9:
            offset = -1  # Kafka's answer when nothing is in remote storage
        elif wanted >= 0:
            offset, timestamp = await broker.timestamps.offset_for_time(color, wanted)
        else:
            raise _PartitionFailed(ErrorCode.INVALID_REQUEST)
        stable = broker.transactions.state.stable_before(color.id) if committed else None
        if stable is not None and wanted not in (LATEST, EARLIEST, EARLIEST_LOCAL) and offset >= stable:
            # read_committed finds nothing at or past the last stable offset, as in Kafka.
            offset, timestamp = -1, -1
        return {"partition_index": part["partition_index"], "error_code": ErrorCode.NONE,
                "timestamp": timestamp, "offset": offset,
                "leader_epoch": LEADER_EPOCH if offset >= 0 else -1}

    def error(part: Body, code: ErrorCode) -> Body:
        return {"partition_index": part["partition_index"], "error_code": code,
                "timestamp": -1, "offset": -1, "leader_epoch": -1}

    topics = await _per_partition(request.body["topics"], "name", answer, error)
    return {"throttle_time_ms": 0, "topics": topics}


@serves(ApiKey.OFFSET_FOR_LEADER_EPOCH, 0, 4)
async def handle_offset_for_leader_epoch(broker: Broker, request: Request) -> Body:
    async def answer(topic: str, part: Body) -> Body:
        color = await _color(broker, Operation.DESCRIBE, topic, part["partition"])
        if part["leader_epoch"] > LEADER_EPOCH:
            # An epoch that never existed: Kafka answers "unknown" rather than guessing.
            return {"error_code": ErrorCode.NONE, "partition": part["partition"],
                    "leader_epoch": -1, "end_offset": -1}
        return {"error_code": ErrorCode.NONE, "partition": part["partition"],
                "leader_epoch": LEADER_EPOCH, "end_offset": await broker.client.tail(color)}

    def error(part: Body, code: ErrorCode) -> Body:
        return {"error_code": code, "partition": part["partition"], "leader_epoch": -1,
                "end_offset": -1}

    topics = await _per_partition(request.body["topics"], "topic", answer, error)
    return {"throttle_time_ms": 0, "topics": topics}


@serves(ApiKey.DELETE_RECORDS, 0, 2)
async def handle_delete_records(broker: Broker, request: Request) -> Body:
    async def answer(topic: str, part: Body) -> Body:
        color = await _color(broker, Operation.DELETE, topic, part["partition_index"])
        log_start, tail = await broker.client.state(color)
        log_start = broker.partition_starts.start(color, log_start)
        offset = part["offset"]
        if offset == -1:
            # An ordered partition's tail (the owner's next SN) may lie above an append still
            # being stored, acknowledged after this answer: delete up to the end of the
            # family's gapless order instead, which readers have reached.
            offset = (await broker.timestamps.refresh(color))[0].upto if color.family else tail
        if not 0 <= offset <= tail:
            raise _PartitionFailed(ErrorCode.OFFSET_OUT_OF_RANGE)
        if offset > log_start:
            if color.family:
                # A family is trimmed as a whole (`FlexLogClient.trim`): trimming this
                # partition's color would delete the other partitions' records too.
                await broker.partition_starts.move(color, offset)
            else:
                await broker.client.trim(offset - 1, color)
            log_start = offset
        broker.log_starts[color.id] = log_start
        return {"partition_index": part["partition_index"], "low_watermark": log_start,
                "error_code": ErrorCode.NONE}

    def error(part: Body, code: ErrorCode) -> Body:
        return {"partition_index": part["partition_index"], "low_watermark": -1, "error_code": code}

    topics = await _per_partition(request.body["topics"], "name", answer, error)
    return {"throttle_time_ms": 0, "topics": topics}
