"""Hostile and broken clients over real sockets against a real cluster."""

from __future__ import annotations

import struct

from flexlog.core import record_batch
from flexlog.gateway.protocol import ApiKey, ErrorCode, encode_request
from wire_client import WireClient


def metadata_works(address: str) -> bool:
    client = WireClient(address)
    try:
        return bool(client.call(ApiKey.METADATA, 9, {"topics": None})["brokers"])
    finally:
        client.close()


def produce(client: WireClient, topic: str, records: bytes, version: int = 9) -> dict:
    body = {"acks": -1, "timeout_ms": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]}
    return client.call(ApiKey.PRODUCE, version, body)["responses"][0]["partition_responses"][0]


def high_watermark(client: WireClient, topic: str) -> int:
    body = {"replica_id": -1, "topics": [{"name": topic, "partitions": [
        {"partition_index": 0, "timestamp": -1}]}]}
    return client.call(ApiKey.LIST_OFFSETS, 7, body)["topics"][0]["partitions"][0]["offset"]


def test_garbage_frame_closes_only_that_connection(bootstrap):
    bad = WireClient(bootstrap)
    other = WireClient(bootstrap)
    bad.send_raw(struct.pack(">i", 12) + b"\x00\x03\x00\x09garbage!")
    assert bad.read_frame() is None
    assert other.call(ApiKey.METADATA, 9, {"topics": None})["brokers"]
    other.close()
    bad.close()


def test_truncated_body_closes(bootstrap):
    bad = WireClient(bootstrap)
    frame = encode_request(ApiKey.METADATA, 9, 1, {"topics": [{"name": "abc"}]})
    # A consistent size prefix around a body cut short in the middle of the topic array.
    cut = frame[4:-6]
    bad.send_raw(struct.pack(">i", len(cut)) + cut)
    assert bad.read_frame() is None
    bad.close()
    assert metadata_works(bootstrap)


def test_huge_size_prefix_is_refused_without_allocating(bootstrap):
    bad = WireClient(bootstrap)
    bad.send_raw(struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 64)
    assert bad.read_frame() is None
    bad.close()
    negative = WireClient(bootstrap)
    negative.send_raw(struct.pack(">i", -5))
    assert negative.read_frame() is None
    negative.close()
    assert metadata_works(bootstrap)


def test_unknown_api_key_and_version(bootstrap):
    client = WireClient(bootstrap)
    client.send_raw(struct.pack(">ihhi", 10, 999, 0, 1) + b"\x00\x00")
    assert client.read_frame() is None
    client.close()

    # ApiVersions at a version from the future: a v0 answer with error 35, connection kept.
    client = WireClient(bootstrap)
    client.send_raw(struct.pack(">ihhih", 12, ApiKey.API_VERSIONS, 99, 7, -1) + b"\x00\x00")
    frame = client.read_frame()
    assert frame is not None
    correlation, error, count = struct.unpack_from(">ihi", frame)
    assert (correlation, error) == (7, ErrorCode.UNSUPPORTED_VERSION)
    keys = {struct.unpack_from(">h", frame, 10 + 6 * i)[0] for i in range(count)}
    assert ApiKey.API_VERSIONS in keys
    assert client.call(ApiKey.API_VERSIONS, 3, {})["error_code"] == 0
    client.close()

    # Fetch below the served range: Kafka disconnects.
    client = WireClient(bootstrap)
    client.send_raw(struct.pack(">ihhih", 10, ApiKey.FETCH, 3, 1, -1))
    assert client.read_frame() is None
    client.close()


def test_old_produce_versions_get_unsupported_version(bootstrap):
    client = WireClient(bootstrap)
    client.call(ApiKey.METADATA, 9, {"topics": [{"name": "old-produce"}]})
    result = produce(client, "old-produce", record_batch.build([b"x"]), version=2)
    assert result["error_code"] == ErrorCode.UNSUPPORTED_VERSION
    client.close()


def test_corrupt_batch_is_rejected_and_not_stored(bootstrap):
    client = WireClient(bootstrap)
    client.call(ApiKey.METADATA, 9, {"topics": [{"name": "corrupt"}]})
    good = record_batch.build([b"hello"])
    assert produce(client, "corrupt", good)["error_code"] == ErrorCode.NONE
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    assert produce(client, "corrupt", bytes(flipped))["error_code"] == ErrorCode.CORRUPT_MESSAGE
    control = bytearray(good)
    control[22] |= record_batch.CONTROL_BIT
    assert produce(client, "corrupt", bytes(control))["error_code"] in (
        ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD)
    assert produce(client, "corrupt", good + good)["error_code"] == ErrorCode.INVALID_RECORD
    assert produce(client, "corrupt", good[:-3])["error_code"] == ErrorCode.CORRUPT_MESSAGE
    assert high_watermark(client, "corrupt") == 1
    client.close()


def test_acks_zero_gets_no_response_and_invalid_acks_error(bootstrap):
    client = WireClient(bootstrap)
    client.call(ApiKey.METADATA, 9, {"topics": [{"name": "acks"}]})
    body = {"acks": 0, "timeout_ms": 5000, "topic_data": [
        {"name": "acks", "partition_data": [{"index": 0, "records": record_batch.build([b"a"])}]}]}
    client.send_raw(encode_request(ApiKey.PRODUCE, 9, 50, body))
    # The next answer on the connection belongs to the next request, not to the acks=0 one.
    body2 = dict(body, acks=2)
    result = client.call(ApiKey.PRODUCE, 9, body2)["responses"][0]["partition_responses"][0]
    assert result["error_code"] == ErrorCode.INVALID_REQUIRED_ACKS
    assert high_watermark(client, "acks") == 1
    client.close()
