"""The transaction APIs (24, 25, 26, 28, 61, 65, 66): defined and decodable, not yet served.

test_protocol_roundtrip.py already round-trips every version of them (they are in APIS);
here: an independent encoding (kafka-python's classes, generated from Kafka's JSON),
hand-written bodies for the shapes handlers will use, and the staging rule.
"""

from __future__ import annotations

import pytest
from kafka.protocol.admin import transactions as admin_txn
from kafka.protocol.producer import transaction as producer_txn
from protocol_samples import sample

from flexlog.gateway.protocol import (
    ApiKey,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    response_header_version,
)
from flexlog.gateway.protocol.messages import APIS

KAFKA_3_9 = {
    ApiKey.ADD_PARTITIONS_TO_TXN: (0, 5),
    ApiKey.ADD_OFFSETS_TO_TXN: (0, 4),
    ApiKey.END_TXN: (0, 4),
    ApiKey.TXN_OFFSET_COMMIT: (0, 4),
    ApiKey.DESCRIBE_PRODUCERS: (0, 0),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    ApiKey.LIST_TRANSACTIONS: (0, 1),
}

# Kafka's first flexible version of each.
FLEXIBLE = {24: 3, 25: 3, 26: 3, 28: 3, 61: 0, 65: 0, 66: 0}

CLASSES = {
    ApiKey.ADD_PARTITIONS_TO_TXN: (producer_txn.AddPartitionsToTxnRequest,
                                   producer_txn.AddPartitionsToTxnResponse),
    ApiKey.ADD_OFFSETS_TO_TXN: (producer_txn.AddOffsetsToTxnRequest, producer_txn.AddOffsetsToTxnResponse),
    ApiKey.END_TXN: (producer_txn.EndTxnRequest, producer_txn.EndTxnResponse),
    ApiKey.TXN_OFFSET_COMMIT: (producer_txn.TxnOffsetCommitRequest, producer_txn.TxnOffsetCommitResponse),
    ApiKey.DESCRIBE_PRODUCERS: (admin_txn.DescribeProducersRequest, admin_txn.DescribeProducersResponse),
    ApiKey.DESCRIBE_TRANSACTIONS: (admin_txn.DescribeTransactionsRequest,
                                   admin_txn.DescribeTransactionsResponse),
    ApiKey.LIST_TRANSACTIONS: (admin_txn.ListTransactionsRequest, admin_txn.ListTransactionsResponse),
}

CASES = [pytest.param(key, v, id=f"{key.name}-v{v}")
         for key, (low, high) in KAFKA_3_9.items() for v in range(low, high + 1)]


def test_ranges_and_flexible_versions_are_kafka_3_9s() -> None:
    for key, versions in KAFKA_3_9.items():
        api = APIS[key]
        assert api.versions == versions, key.name
        assert [v for v in range(versions[0], versions[1] + 1) if api.is_flexible(v)] == [
            v for v in range(versions[0], versions[1] + 1) if v >= FLEXIBLE[key]], key.name


def test_served_and_advertised_at_kafka_3_9s_ranges() -> None:
    from flexlog.gateway.handlers.registry import advertised

    offered = {entry["api_key"]: (entry["min_version"], entry["max_version"]) for entry in advertised()}
    for key, versions in KAFKA_3_9.items():
        assert offered[key] == versions, key.name


@pytest.mark.parametrize(("key", "version"), CASES)
@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
def test_kafka_python_reads_and_rewrites_our_bodies(key: ApiKey, version: int, nulls: bool) -> None:
    request_class, response_class = CLASSES[key]
    frame = encode_request(key, version, 9, sample(key, version, request=True, nulls=nulls),
                           client_id="c")[4:]
    decoded = request_class.decode(frame, version=version, header=True)
    assert frame.endswith(decoded.encode(version=version))
    frame = encode_response(key, version, 9, sample(key, version, request=False, nulls=nulls))
    body = frame[8 + response_header_version(key, version):]
    assert response_class.decode(body, version=version).encode() == body


def test_add_partitions_to_txn_v4_batches_transactions() -> None:
    body = {
        "transactions": [
            {"transactional_id": "tx-a", "producer_id": 7, "producer_epoch": 2, "verify_only": True,
             "topics": [{"name": "orders", "partitions": [0, 3]}]},
            {"transactional_id": "tx-b", "producer_id": 8, "producer_epoch": 0,
             "topics": [{"name": "orders", "partitions": [1]}, {"name": "audit", "partitions": []}]},
        ],
    }
    for version in (4, 5):
        request = decode_request(encode_request(ApiKey.ADD_PARTITIONS_TO_TXN, version, 3, body)[4:])
        assert [t.transactional_id for t in request.body.transactions] == ["tx-a", "tx-b"]
        assert [t.verify_only for t in request.body.transactions] == [True, False]
        assert request.body.transactions[1].topics[0] == {"name": "orders", "partitions": [1]}
        assert "v3_and_below_transactional_id" not in request.body
        response_body = {
            "error_code": 0,
            "results_by_transaction": [
                {"transactional_id": "tx-a", "topic_results": [
                    {"name": "orders", "results_by_partition": [
                        {"partition_index": 0, "partition_error_code": 0},
                        {"partition_index": 3, "partition_error_code": 48},  # INVALID_TXN_STATE
                    ]},
                ]},
            ],
            "results_by_topic_v3_and_below": [{"name": "ignored in v4+"}],
        }
        frame = encode_response(ApiKey.ADD_PARTITIONS_TO_TXN, version, 3, response_body)
        decoded = decode_response(ApiKey.ADD_PARTITIONS_TO_TXN, version, frame[4:]).body
        assert decoded.results_by_transaction[0].topic_results[0].results_by_partition[1] == {
            "partition_index": 3, "partition_error_code": 48}
        assert "results_by_topic_v3_and_below" not in decoded


def test_add_partitions_to_txn_v3_is_a_flexible_single_transaction() -> None:
    body = {"v3_and_below_transactional_id": "tx", "v3_and_below_producer_id": 5,
            "v3_and_below_producer_epoch": 1,
            "v3_and_below_topics": [{"name": "t", "partitions": [2]}],
            "transactions": [{"transactional_id": "dropped below v4"}]}
    frame = encode_request(ApiKey.ADD_PARTITIONS_TO_TXN, 3, 1, body, client_id="c")
    # Size, key, version, correlation id, client id "c", then header v2's empty tag buffer;
    # the body opens with a compact string ("tx": length + 1 = 3).
    header_end = 4 + 8 + 2 + len("c") + 1
    assert frame[header_end - 1:header_end + 3] == b"\x00\x03tx"
    request = decode_request(frame[4:])
    assert request.body == {k: v for k, v in body.items() if k != "transactions"}


def test_txn_offset_commit_v3_carries_the_member() -> None:
    body = {"transactional_id": "tx", "group_id": "g", "producer_id": 11, "producer_epoch": 3,
            "generation_id": 4, "member_id": "m-1", "group_instance_id": None,
            "topics": [{"name": "t", "partitions": [
                {"partition_index": 0, "committed_offset": 42, "committed_leader_epoch": 6,
                 "committed_metadata": None}]}]}
    for version in (3, 4):
        assert decode_request(encode_request(ApiKey.TXN_OFFSET_COMMIT, version, 1, body)[4:]).body == body
    old = decode_request(encode_request(ApiKey.TXN_OFFSET_COMMIT, 1, 1, body)[4:]).body
    assert "member_id" not in old and "committed_leader_epoch" not in old.topics[0].partitions[0]
    assert old.topics[0].partitions[0].committed_offset == 42


def test_unknown_tags_are_skipped_in_flexible_versions() -> None:
    """An EndTxn v3 request with an unknown tag at the end of the body still decodes."""
    frame = encode_request(ApiKey.END_TXN, 3, 1, {"transactional_id": "tx", "producer_id": 1,
                                                  "producer_epoch": 0, "committed": True})[4:]
    assert frame.endswith(b"\x01\x00")  # committed, then an empty tag buffer
    tagged = frame[:-1] + b"\x01" + b"\x05\x02zz"  # one tag (5), two bytes long
    assert decode_request(tagged).body == decode_request(frame).body


def test_empty_bodies_take_kafkas_defaults() -> None:
    describe = decode_response(ApiKey.DESCRIBE_PRODUCERS, 0, encode_response(
        ApiKey.DESCRIBE_PRODUCERS, 0, 1,
        {"topics": [{"name": "t", "partitions": [{"active_producers": [{"producer_id": 9}]}]}]})[4:]).body
    partition = describe.topics[0].partitions[0]
    assert partition.error_message is None
    assert partition.active_producers[0] == {
        "producer_id": 9, "producer_epoch": 0, "last_sequence": -1, "last_timestamp": -1,
        "coordinator_epoch": 0, "current_txn_start_offset": -1}
    listed = decode_request(encode_request(ApiKey.LIST_TRANSACTIONS, 1, 1, {})[4:]).body
    assert listed == {"state_filters": [], "producer_id_filters": [], "duration_filter": -1}
    commit = decode_request(encode_request(ApiKey.TXN_OFFSET_COMMIT, 3, 1, {})[4:]).body
    assert (commit.generation_id, commit.member_id, commit.group_instance_id) == (-1, "", None)
