"""Frames written byte by byte from the protocol spec, so the codec is checked against
Kafka's encoding rather than against itself."""

from __future__ import annotations

import pytest

from flexlog.gateway.protocol import (
    ApiKey,
    MalformedFrame,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    request_header_version,
    response_header_version,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


# ApiVersions v0 request from client "kcat", correlation id 1: header v1, empty body.
API_VERSIONS_V0_REQUEST = h("0012 0000 00000001 0004 6b636174")
# ApiVersions v0 response advertising only itself (18, 0..4).
API_VERSIONS_V0_RESPONSE = h("00000001 0000 00000001 0012 0000 0004")


def test_api_versions_v0_request() -> None:
    request = decode_request(API_VERSIONS_V0_REQUEST)
    assert (request.api_key, request.api_version, request.correlation_id) == (18, 0, 1)
    assert request.client_id == "kcat"
    assert request.body == {}
    assert encode_request(18, 0, 1, {}, client_id="kcat") == framed(API_VERSIONS_V0_REQUEST)


def test_api_versions_v0_response() -> None:
    body = {"error_code": 0, "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 4}]}
    assert encode_response(18, 0, 1, body) == framed(API_VERSIONS_V0_RESPONSE)
    assert decode_response(18, 0, API_VERSIONS_V0_RESPONSE).body == body


def test_api_versions_v3_response_keeps_header_v0() -> None:
    body = {"api_keys": [{"api_key": 18, "min_version": 0, "max_version": 4}]}
    expected = h(
        "00000007"  # correlation id, and no header tag buffer: header v0
        "0000"  # error_code
        "02 0012 0000 0004 00"  # compact array of 1, element tags
        "00000000"  # throttle_time_ms
        "00"  # body tags: every tagged field at its default
    )
    assert encode_response(18, 3, 7, body) == framed(expected)
    assert response_header_version(ApiKeys := ApiKey.API_VERSIONS, 3) == 0
    assert response_header_version(ApiKeys, 4) == 0


def test_api_versions_v3_request_has_header_v2_with_int16_client_id() -> None:
    payload = h(
        "0012 0003 0000002a"
        "0003 616263"  # client_id "abc": int16 length even in header v2
        "00"  # header tags
        "09 6b61666b612d7079"  # client_software_name "kafka-py": compact, length + 1
        "04 322e30"  # client_software_version "2.0"
        "00"
    )
    request = decode_request(payload)
    assert request.client_id == "abc"
    assert request.body == {"client_software_name": "kafka-py", "client_software_version": "2.0"}
    assert encode_request(18, 3, 42, request.body, client_id="abc") == framed(payload)


def test_metadata_v1_request() -> None:
    payload = h("0003 0001 00000005 0001 63 00000002 0003 666f6f 0003 626172")
    request = decode_request(payload)
    assert request.body == {"topics": [{"name": "foo"}, {"name": "bar"}]}
    assert encode_request(3, 1, 5, request.body, client_id="c") == framed(payload)


def test_metadata_v1_request_null_topics_means_all() -> None:
    payload = h("0003 0001 00000005 0001 63 ffffffff")
    assert decode_request(payload).body == {"topics": None}
    assert encode_request(3, 1, 5, {"topics": None}, client_id="c") == framed(payload)


METADATA_V9_REQUEST = h(
    "0003 0009 00000006 0001 63 00"  # header v2, no tags
    "02 04 666f6f 00"  # one topic "foo", element tags
    "01 00 00"  # allow_auto_topic_creation, include_{cluster,topic}_authorized_operations
    "00"  # body tags
)


def test_metadata_v9_request() -> None:
    request = decode_request(METADATA_V9_REQUEST)
    assert request.body == {
        "topics": [{"name": "foo"}],
        "allow_auto_topic_creation": True,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
    assert encode_request(3, 9, 6, request.body, client_id="c") == framed(METADATA_V9_REQUEST)


def test_metadata_v9_request_skips_unknown_tags_everywhere() -> None:
    payload = h(
        "0003 0009 00000006 0001 63"
        "01 05 02 abcd"  # header: one unknown tag 5 with 2 bytes
        "02 04 666f6f"
        "02 07 00 09 03 010203"  # topic element: two unknown tags, one empty
        "01 00 00"
        "01 a001 01 ff"  # body: unknown tag 160 (two-byte varint)
    )
    assert decode_request(payload).body == decode_request(METADATA_V9_REQUEST).body


def test_truncated_tag_buffer_is_malformed() -> None:
    payload = METADATA_V9_REQUEST[:-1] + h("01 05 09 ab")
    with pytest.raises(MalformedFrame) as info:
        decode_request(payload)
    assert info.value.correlation_id == 6


RECORDS = bytes(range(61)) + b"payload"


def test_produce_v3_request_with_records() -> None:
    payload = (
        h(
            "0000 0003 00000009 0004 6b636174"
            "ffff"  # transactional_id null
            "ffff"  # acks -1
            "00007530"  # timeout_ms 30000
            "00000001 0003 666f6f"  # one topic "foo"
            "00000001 00000002"  # one partition, index 2
        )
        + len(RECORDS).to_bytes(4, "big")
        + RECORDS
    )
    request = decode_request(payload)
    assert request.body == {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 30000,
        "topic_data": [{"name": "foo", "partition_data": [{"index": 2, "records": RECORDS}]}],
    }
    assert encode_request(0, 3, 9, request.body, client_id="kcat") == framed(payload)


def test_produce_v9_request_uses_compact_records() -> None:
    payload = (
        h("0000 0009 00000009 0004 6b636174 00" "00 0001 00007530 02 04 666f6f 02 00000000")
        + bytes([len(RECORDS) + 1])
        + RECORDS
        + h("00 00 00")  # partition, topic and body tag buffers
    )
    body = decode_request(payload).body
    assert body.topic_data[0].partition_data[0].records == RECORDS
    assert body.transactional_id is None
    assert encode_request(0, 9, 9, body, client_id="kcat") == framed(payload)


def test_fetch_v12_response_tags_only_non_defaults() -> None:
    partition = {"partition_index": 0, "high_watermark": 10, "records": b""}
    plain = encode_response(1, 12, 3, {"responses": [{"topic": "t", "partitions": [partition]}]})
    tagged = encode_response(
        1,
        12,
        3,
        {
            "responses": [
                {"topic": "t", "partitions": [{**partition, "current_leader": {"leader_id": 1}}]}
            ]
        },
    )
    partition_tail = h(
        "ffffffffffffffff ffffffffffffffff"  # last_stable_offset, log_start_offset
        "01"  # aborted_transactions: an empty compact array
        "ffffffff"  # preferred_read_replica
        "01"  # records: empty, not null (librdkafka rejects null)
    )
    assert plain.endswith(partition_tail + h("00 00 00"))
    # current_leader is tag 1: leader_id 1, leader_epoch -1 (default), struct tags.
    assert tagged.endswith(partition_tail + h("01 01 09 00000001 ffffffff 00" "00 00"))


def test_response_header_v1_for_flexible_apis() -> None:
    frame = encode_response(ApiKey.METADATA, 9, 77, {})
    assert frame[4:9] == h("0000004d 00")
    assert encode_response(ApiKey.METADATA, 8, 77, {})[4:8] == h("0000004d")


@pytest.mark.parametrize(
    ("key", "version", "request_header", "response_header"),
    [
        (ApiKey.PRODUCE, 8, 1, 0),
        (ApiKey.PRODUCE, 9, 2, 1),
        (ApiKey.FETCH, 11, 1, 0),
        (ApiKey.FETCH, 12, 2, 1),
        (ApiKey.API_VERSIONS, 2, 1, 0),
        (ApiKey.API_VERSIONS, 3, 2, 0),
        (ApiKey.SASL_HANDSHAKE, 1, 1, 0),
        (ApiKey.DESCRIBE_CLUSTER, 0, 2, 1),
    ],
)
def test_header_versions(key: int, version: int, request_header: int, response_header: int) -> None:
    assert request_header_version(key, version) == request_header
    assert response_header_version(key, version) == response_header
