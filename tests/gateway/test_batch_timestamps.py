"""Batch max timestamps over the wire: what older clients send, retention and ListOffsets by time.

Sarama 1.22 sends Produce v3 batches whose header maxTimestamp is -1. Kafka
recomputes it from the records when it accepts a batch; the gateway must too,
or retention expires the batch at once and ListOffsets by time cannot find it.
"""

from __future__ import annotations

import gzip
import struct
import time
import uuid
from collections.abc import Iterator

import crc32c
import pytest

from flexlog.core import record_batch
from flexlog.core.record_batch import CRC_START, HEADER_SIZE, Record
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient, running_gateway

CHECK_INTERVAL_MS = 100
MAX_TIMESTAMP_AT = 35
ATTRIBUTES_AT = 21


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireClient]:
    extra = f"log_retention_check_interval_ms = {CHECK_INTERVAL_MS}"
    with running_gateway(tmp_path_factory.mktemp("cluster"), extra) as address:
        c = WireClient(address)
        yield c
        c.close()


def like_sarama_1_22(timestamps: list[int], codec: int = record_batch.CODEC_NONE) -> bytes:
    """One batch of records with these times whose header says maxTimestamp -1."""
    plain = bytearray(record_batch.build([Record(value=b"v%d" % i, timestamp_ms=ts)
                                          for i, ts in enumerate(timestamps)]))
    if codec == record_batch.CODEC_GZIP:
        records = gzip.compress(bytes(plain[HEADER_SIZE:]))
        plain = plain[:HEADER_SIZE] + records
        struct.pack_into(">i", plain, 8, len(plain) - record_batch.LENGTH_PREFIX)
        struct.pack_into(">h", plain, ATTRIBUTES_AT, codec)
    struct.pack_into(">q", plain, MAX_TIMESTAMP_AT, -1)
    struct.pack_into(">I", plain, 17, crc32c.crc32c(bytes(plain[CRC_START:])))
    return bytes(plain)


def create_topic(client: WireClient, retention_ms: int | None = None) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    configs = [] if retention_ms is None else [{"name": "retention.ms", "value": str(retention_ms)}]
    body = client.call(ApiKey.CREATE_TOPICS, 4, {"topics": [
        {"name": name, "num_partitions": 1, "replication_factor": 1, "assignments": [],
         "configs": configs}], "timeout_ms": 10_000})
    assert body["topics"][0]["error_code"] == ErrorCode.NONE
    return name


def produce_v3(client: WireClient, topic: str, batch: bytes) -> int:
    body = client.call(ApiKey.PRODUCE, 3, {"transactional_id": None, "acks": -1, "timeout_ms": 10_000,
                                           "topic_data": [{"name": topic, "partition_data": [
                                               {"index": 0, "records": batch}]}]})
    part = body["responses"][0]["partition_responses"][0]
    assert part["error_code"] == ErrorCode.NONE
    return part["base_offset"]


def list_offset(client: WireClient, topic: str, timestamp: int) -> tuple[int, int]:
    body = client.call(ApiKey.LIST_OFFSETS, 1, {"replica_id": -1, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "timestamp": timestamp}]}]})
    part = body["topics"][0]["partitions"][0]
    assert part["error_code"] == ErrorCode.NONE
    return part["offset"], part["timestamp"]


def fetch_all(client: WireClient, topic: str) -> list[bytes]:
    body = client.call(ApiKey.FETCH, 4, {
        "replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
        "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]})
    part = body["responses"][0]["partitions"][0]
    assert part["error_code"] == ErrorCode.NONE
    return [bytes(b) for b in record_batch.split(part["records"])]


def wait_for_retention_passes() -> None:
    time.sleep(10 * CHECK_INTERVAL_MS / 1000)


@pytest.mark.parametrize("codec", [record_batch.CODEC_NONE, record_batch.CODEC_GZIP])
def test_a_batch_without_max_timestamp_is_kept_and_found_by_time(client, codec):
    topic = create_topic(client)  # Kafka's default retention: 7 days
    now = int(time.time() * 1000)
    times = [now - 5000 + 1000 * i for i in range(5)]
    sent = like_sarama_1_22(times, codec)
    assert produce_v3(client, topic, sent) == 0
    assert produce_v3(client, topic, record_batch.build([b"later"], timestamp_ms=now + 1000)) == 5
    wait_for_retention_passes()
    assert list_offset(client, topic, -2) == (0, -1)  # nothing expired
    stored = fetch_all(client, topic)[0]
    header = record_batch.parse_header(stored)
    # Kafka rewrites only maxTimestamp (and the CRC over it); the records are untouched.
    assert header.max_timestamp == max(times)
    assert crc32c.crc32c(stored[CRC_START:]) == header.crc
    assert stored[HEADER_SIZE:] == sent[HEADER_SIZE:]
    assert stored[ATTRIBUTES_AT:MAX_TIMESTAMP_AT] == sent[ATTRIBUTES_AT:MAX_TIMESTAMP_AT]
    assert [r.value for r in record_batch.decode(stored)] == [b"v%d" % i for i in range(5)]
    assert list_offset(client, topic, times[2]) == (2, times[2])
    assert list_offset(client, topic, times[2] + 1) == (3, times[3])
    assert list_offset(client, topic, now + 1) == (5, now + 1000)


def test_retention_still_expires_old_records_of_such_a_batch(client):
    topic = create_topic(client, retention_ms=60_000)
    old = int(time.time() * 1000) - 3_600_000
    produce_v3(client, topic, like_sarama_1_22([old, old + 1]))
    produce_v3(client, topic, record_batch.build([b"fresh"]))
    deadline = time.monotonic() + 10
    while list_offset(client, topic, -2)[0] != 2:
        assert time.monotonic() < deadline, "the hour-old batch was never expired"
        time.sleep(CHECK_INTERVAL_MS / 1000)
    assert list_offset(client, topic, -1)[0] == 3
