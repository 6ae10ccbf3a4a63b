"""Produce (0): validate each client batch, then append its bytes as one entry.

A transactional batch is taken only while its producer's transaction is
ongoing and holds the partition (``gateway/transactions.py``), so no batch of
a transaction lands after its end marker.

As Kafka's broker does, the gateway sets the header's maxTimestamp to the
largest record timestamp when the producer's differs (then the CRC over it);
the log rewrites only baseOffset (outside the CRC). The records themselves,
compressed or not, reach consumers exactly as the producer sent them. Batches of idempotent
producers are checked against the producer's epoch and sequence first
(``gateway/idempotence.py``); a retry of a recent batch is answered with the
offset it was stored at and not appended again. Only a partition's leader
gateway takes its produce requests, so one gateway sees all its sequences. Every append is write-all, so
acks=1 and acks=-1 both answer after every replica of the shard committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import crc32c

from flexlog.core import record_batch
from flexlog.core.errors import FlexLogError
from flexlog.core.record_batch import CorruptBatch
from flexlog.core.registry import ColorInfo
from flexlog.gateway import authz, offsets_topic, retention
from flexlog.gateway.authz import Operation
from flexlog.gateway.broker import Broker
from flexlog.gateway.handlers.errors import kafka_error
from flexlog.gateway.handlers.registry import Body, CloseConnection, Deferred, serves
from flexlog.gateway.idempotence import NO_PRODUCER_ID
from flexlog.gateway.protocol import ApiKey, ErrorCode, Request
from flexlog.gateway.topics import MAX_MESSAGE_BYTES, Topic

FIRST_SERVED_VERSION = 3  # v0-2 carry message sets older than RecordBatch v2
ZSTD_FROM_VERSION = 7


class BatchRejected(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_batch(records: bytes | None, version: int, max_bytes: int) -> record_batch.BatchHeader:
    """Kafka's checks of one partition's records for Produce v3+; raises BatchRejected."""
    if not records:
        raise BatchRejected(ErrorCode.INVALID_RECORD, "no records")
    try:
        header = record_batch.parse_header(records)
    except CorruptBatch as exc:
        raise BatchRejected(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    if header.magic != record_batch.MAGIC:
        raise BatchRejected(ErrorCode.CORRUPT_MESSAGE, f"record batch magic {header.magic}, need 2")
    if header.total_size != len(records):
        # Either truncated, or more than the one batch v3+ allows.
        code = ErrorCode.INVALID_RECORD if header.total_size < len(records) else ErrorCode.CORRUPT_MESSAGE
        raise BatchRejected(code, f"batch of {header.total_size} bytes in {len(records)} bytes of "
                                  "records: Produce v3+ takes exactly one batch per partition")
    if crc32c.crc32c(memoryview(records)[record_batch.CRC_START:]) != header.crc:
        raise BatchRejected(ErrorCode.CORRUPT_MESSAGE, "record batch CRC-32C mismatch")
    if header.records_count <= 0 or header.last_offset_delta + 1 != header.records_count:
        raise BatchRejected(ErrorCode.INVALID_RECORD,
                            f"lastOffsetDelta {header.last_offset_delta} does not match "
                            f"recordsCount {header.records_count}")
    if header.is_control:
        raise BatchRejected(ErrorCode.INVALID_RECORD, "clients may not write control batches")
    if header.is_transactional and header.producer_id == NO_PRODUCER_ID:
        raise BatchRejected(ErrorCode.INVALID_RECORD, "a transactional batch needs a producer id")
    if header.codec > record_batch.CODEC_ZSTD:
        raise BatchRejected(ErrorCode.CORRUPT_MESSAGE, f"unknown compression codec {header.codec}")
    if header.codec == record_batch.CODEC_ZSTD and version < ZSTD_FROM_VERSION:
        raise BatchRejected(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7+")
    if len(records) > max_bytes:
        raise BatchRejected(ErrorCode.MESSAGE_TOO_LARGE,
                            f"batch of {len(records)} bytes exceeds max.message.bytes {max_bytes}")
    return header


def stamp_max_timestamp(records: bytes, header: record_batch.BatchHeader,
                        ) -> tuple[bytes, record_batch.BatchHeader]:
    """Kafka's LogValidator on a CreateTime topic: maxTimestamp is the records' largest time.

    Older clients (Sarama 1.22) send -1 there; kept, retention would expire the
    batch at once and ListOffsets by time would not find it. Like Kafka's
    setMaxTimestamp, the batch is rewritten only when the field (or the
    timestamp type) differs, and then its CRC is recomputed.
    """
    try:
        max_ts = record_batch.max_record_timestamp(records, header)
    except CorruptBatch as exc:
        raise BatchRejected(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    if max_ts == header.max_timestamp and not header.attributes & record_batch.LOG_APPEND_TIME_BIT:
        return records, header
    records = record_batch.with_max_timestamp(records, max_ts)
    return records, record_batch.parse_header(records)


def _result(index: int, code: ErrorCode, base_offset: int = -1, log_start: int = -1,
            message: str | None = None) -> Body:
    return {"index": index, "error_code": code, "base_offset": base_offset,
            "log_append_time_ms": -1, "log_start_offset": log_start, "record_errors": [],
            "error_message": message}


async def _submit_partition(broker: Broker, topic_name: str, part: Body,
                            version: int) -> Body | Awaitable[Body]:
    """Check one partition's batch and send it to the log; the result, or an awaitable of it.

    Returns once the append is submitted, so the next request's appends queue
    behind it: the log keeps one client's appends to a color in submission order.
    """
    index = part["index"]
    if not authz.topic_allowed(broker, Operation.WRITE, topic_name):
        return _result(index, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    if topic_name == offsets_topic.TOPIC:
        # As Kafka refuses appends to an internal topic from clients: it is derived, read-only.
        return _result(index, ErrorCode.INVALID_TOPIC_EXCEPTION)
    topic = await broker.topics.lookup(topic_name)
    if topic is None or not 0 <= index < topic.partitions:
        return _result(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if not broker.leads(index):
        return _result(index, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    records = part["records"]
    try:
        header = check_batch(records, version,
                             topic.int_config(MAX_MESSAGE_BYTES, broker.topics.defaults))
        records, header = stamp_max_timestamp(records, header)
        color = await broker.topics.color(topic_name, index)
        if header.producer_id == NO_PRODUCER_ID:
            appended: Awaitable[int] = await broker.client.submit_batch(records, color, validated=True)
        else:
            appended = await _submit_idempotent(broker, color, header, records)
    except BatchRejected as exc:
        return _result(index, exc.code, message=str(exc))
    except FlexLogError as exc:
        return _result(index, kafka_error(exc), message=str(exc))
    return _landed(broker, index, topic, color, records, appended)


async def _landed(broker: Broker, index: int, topic: Topic, color: ColorInfo, records: bytes,
                  appended: Awaitable[int]) -> Body:
    try:
        sn = await appended
    except BatchRejected as exc:
        return _result(index, exc.code, message=str(exc))
    except FlexLogError as exc:
        return _result(index, kafka_error(exc), message=str(exc))
    # Only a partition's first batch may start its index: the topic's retention is read then.
    broker.timestamps.note(color, sn, records,
                           start=sn == 0 and retention.applies(topic, broker.topics.defaults))
    return _result(index, ErrorCode.NONE, sn, broker.log_starts.get(color.id, 0))


async def _submit_idempotent(broker: Broker, color: ColorInfo, header: record_batch.BatchHeader,
                             records: bytes) -> Awaitable[int]:
    """Submit unless it is a retry of a recent batch; raises BatchRejected on a sequence error.

    Nothing suspends between the check and the record, so pipelined batches of
    one producer are checked against each other in request order, and a retry on
    another connection sees the batch it repeats: room in the client's window is
    waited for before the check, not between it and the submission.
    """
    idem = broker.idempotence
    await idem.ensure_loaded(color)
    txns = broker.transactions
    if header.is_transactional:
        refused = await txns.admit(color.id, header.producer_id, header.producer_epoch)
        if refused:
            raise BatchRejected(refused, f"producer {header.producer_id} epoch {header.producer_epoch} "
                                "has no ongoing transaction holding this partition")
    try:
        await broker.client.wait_for_room()
        states = idem.states
        verdict = states.check(color.id, header)
        if verdict.error:
            raise BatchRejected(verdict.error, f"producer {header.producer_id} epoch "
                                f"{header.producer_epoch} sequence {header.base_sequence} refused")
        if verdict.duplicate_of is not None:
            return _as_future(verdict.duplicate_of)
        appended = await broker.client.submit_batch(records, color, validated=True)
        states.record(color.id, header, appended)
    finally:
        if header.is_transactional:
            # Submitted (or refused): the partition's end marker may now be written after it.
            txns.admitted(color.id, header.producer_id)

    def landed(fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            states.retract(color.id, header)

    appended.add_done_callback(landed)
    return appended


def _as_future(base_offset: int | asyncio.Future[int]) -> asyncio.Future[int]:
    if isinstance(base_offset, asyncio.Future):
        return base_offset
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fut.set_result(base_offset)
    return fut


@serves(ApiKey.PRODUCE, 0, 11)
async def handle_produce(broker: Broker, request: Request) -> Body | Deferred | None:
    body = request.body
    version = request.api_version
    acks = body["acks"]
    topics = body["topic_data"]
    if version < FIRST_SERVED_VERSION or acks not in (-1, 0, 1):
        code = ErrorCode.UNSUPPORTED_VERSION if version < FIRST_SERVED_VERSION \
            else ErrorCode.INVALID_REQUIRED_ACKS
        if acks == 0:
            raise CloseConnection(f"acks=0 produce rejected with error {code}")
        return {"responses": [{"name": t["name"],
                               "partition_responses": [_result(p["index"], code)
                                                       for p in t["partition_data"]]}
                              for t in topics], "throttle_time_ms": 0}
    txn_id = body.get("transactional_id")
    if txn_id is not None and not authz.transactional_id_allowed(broker, Operation.WRITE, txn_id):
        denied = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return {"responses": [{"name": t["name"],
                               "partition_responses": [_result(p["index"], denied)
                                                       for p in t["partition_data"]]}
                              for t in topics], "throttle_time_ms": 0}
    submitted = [await _submit_partition(broker, t["name"], p, version)
                 for t in topics for p in t["partition_data"]]
    return Deferred(_respond(topics, submitted, acks))


async def _respond(topics: list[Body], submitted: list[Body | Awaitable[Body]], acks: int) -> Body | None:
    results = iter([r if isinstance(r, dict) else await r for r in submitted])
    responses = [{"name": t["name"], "partition_responses": [next(results) for _ in t["partition_data"]]}
                 for t in topics]
    if acks == 0:
        failed = [r for resp in responses for r in resp["partition_responses"] if r["error_code"]]
        if failed:
            # Kafka's only way to tell an acks=0 producer something went wrong.
            raise CloseConnection(f"acks=0 produce failed with error {failed[0]['error_code']}")
        return None
    return {"responses": responses, "throttle_time_ms": 0}
