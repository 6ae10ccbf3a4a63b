"""Transactional requests out of order, for unknown ids or with stale epochs get Kafka's error codes,
over the wire against one gateway; nothing they ask for is stored."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import crc32c

from flexlog.core import record_batch
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient


def create_topic(c: WireClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = c.call(ApiKey.CREATE_TOPICS, 4, {"topics": [
        {"name": name, "num_partitions": 2, "replication_factor": 1, "assignments": [], "configs": []}],
        "timeout_ms": 10_000})
    assert body["topics"][0]["error_code"] == 0
    return name


def init(c: WireClient, txn_id: str, timeout_ms: int = 60_000, version: int = 4, **extra: Any) -> dict:
    return c.call(ApiKey.INIT_PRODUCER_ID, version,
                  {"transactional_id": txn_id, "transaction_timeout_ms": timeout_ms, **extra})


def add(c: WireClient, txn_id: str, pid: int, epoch: int, topic: str, partitions: list[int],
        version: int = 3) -> list[int]:
    body = c.call(ApiKey.ADD_PARTITIONS_TO_TXN, version, {
        "v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": pid,
        "v3_and_below_producer_epoch": epoch,
        "v3_and_below_topics": [{"name": topic, "partitions": partitions}]})
    return [p["partition_error_code"] for t in body["results_by_topic_v3_and_below"]
            for p in t["results_by_partition"]]


def end(c: WireClient, txn_id: str, pid: int, epoch: int, commit: bool, version: int = 3) -> int:
    return c.call(ApiKey.END_TXN, version, {"transactional_id": txn_id, "producer_id": pid,
                                            "producer_epoch": epoch, "committed": commit})["error_code"]


def produce(c: WireClient, topic: str, pid: int, epoch: int, sequence: int, txn_id: str | None) -> int:
    out = bytearray(record_batch.build([b"v"]))
    struct.pack_into(">qhi", out, 43, pid, epoch, sequence)
    out[22] |= record_batch.TRANSACTIONAL_BIT
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    body = c.call(ApiKey.PRODUCE, 9, {"transactional_id": txn_id, "acks": -1, "timeout_ms": 10_000,
                                      "topic_data": [{"name": topic, "partition_data": [
                                          {"index": 0, "records": bytes(out)}]}]})
    return body["responses"][0]["partition_responses"][0]["error_code"]


def test_requests_out_of_order_or_for_unknown_ids(bootstrap: str) -> None:
    c = WireClient(bootstrap)
    topic = create_topic(c)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    assert init(c, "")["error_code"] == ErrorCode.INVALID_REQUEST
    assert init(c, txn_id, timeout_ms=0)["error_code"] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert init(c, txn_id, timeout_ms=900_001)["error_code"] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    # Nothing was stored for the id by the refused requests.
    described = c.call(ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [txn_id]})
    assert described["transaction_states"][0]["error_code"] == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    assert add(c, txn_id, 5, 0, topic, [0]) == [ErrorCode.INVALID_PRODUCER_ID_MAPPING]
    assert end(c, txn_id, 5, 0, commit=True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING

    first = init(c, txn_id)
    pid, epoch = first["producer_id"], first["producer_epoch"]
    assert first["error_code"] == 0 and epoch == 0
    # Commit before anything was added; abort of nothing is a no-op, as clients expect.
    assert end(c, txn_id, pid, epoch, commit=True) == ErrorCode.INVALID_TXN_STATE
    assert end(c, txn_id, pid, epoch, commit=False) == 0
    # A transactional batch for a partition the transaction does not hold.
    assert produce(c, topic, pid, epoch, 0, txn_id) == ErrorCode.INVALID_TXN_STATE
    # Unknown partitions fail the whole request; the good ones are not attempted.
    assert add(c, txn_id, pid, epoch, topic, [0, 7]) == [ErrorCode.OPERATION_NOT_ATTEMPTED,
                                                          ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    assert add(c, txn_id, pid + 1, epoch, topic, [0]) == [ErrorCode.INVALID_PRODUCER_ID_MAPPING]
    assert add(c, txn_id, pid, epoch + 1, topic, [0]) == [ErrorCode.PRODUCER_FENCED]
    # Versions before KIP-588 do not know PRODUCER_FENCED.
    assert add(c, txn_id, pid, epoch + 1, topic, [0], version=1) == [ErrorCode.INVALID_PRODUCER_EPOCH]
    assert add(c, txn_id, pid, epoch, topic, [0]) == [0]
    assert produce(c, topic, pid, epoch, 0, txn_id) == 0
    # Offsets for a group the transaction did not add.
    txn_commit = c.call(ApiKey.TXN_OFFSET_COMMIT, 3, {
        "transactional_id": txn_id, "group_id": "g-not-added", "producer_id": pid, "producer_epoch": epoch,
        "generation_id": -1, "member_id": "", "group_instance_id": None,
        "topics": [{"name": topic, "partitions": [
            {"partition_index": 0, "committed_offset": 1, "committed_leader_epoch": -1,
             "committed_metadata": None}]}]})
    assert txn_commit["topics"][0]["partitions"][0]["error_code"] == ErrorCode.INVALID_TXN_STATE
    fetched = c.call(ApiKey.OFFSET_FETCH, 7, {"group_id": "g-not-added", "topics": [
        {"name": topic, "partition_indexes": [0]}], "require_stable": True})
    assert fetched["topics"][0]["partitions"][0]["committed_offset"] == -1
    # A stale epoch after a re-initialisation (the old producer is a zombie).
    again = init(c, txn_id)
    while again["error_code"] == ErrorCode.CONCURRENT_TRANSACTIONS:
        again = init(c, txn_id)
    assert again["error_code"] == 0 and again["producer_epoch"] > epoch
    assert end(c, txn_id, pid, epoch, commit=True) == ErrorCode.PRODUCER_FENCED
    assert produce(c, topic, pid, epoch, 1, txn_id) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert init(c, txn_id, producer_id=pid, producer_epoch=epoch)["error_code"] == ErrorCode.PRODUCER_FENCED
    c.close()


def test_tooling_requests(bootstrap: str) -> None:
    c = WireClient(bootstrap)
    topic = create_topic(c)
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    first = init(c, txn_id)
    pid, epoch = first["producer_id"], first["producer_epoch"]
    assert add(c, txn_id, pid, epoch, topic, [0, 1]) == [0, 0]
    assert produce(c, topic, pid, epoch, 0, txn_id) == 0
    state = c.call(ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [txn_id]})["transaction_states"][0]
    assert (state["transaction_state"], state["producer_id"], state["transaction_timeout_ms"]) == \
        ("Ongoing", pid, 60_000)
    assert state["topics"] == [{"topic": topic, "partitions": [0, 1]}]
    listed = c.call(ApiKey.LIST_TRANSACTIONS, 1, {"state_filters": ["Ongoing", "Bogus"],
                                                  "producer_id_filters": [pid], "duration_filter": -1})
    assert listed["unknown_state_filters"] == ["Bogus"]
    assert [t["transactional_id"] for t in listed["transaction_states"]] == [txn_id]
    producers = c.call(ApiKey.DESCRIBE_PRODUCERS, 0,
                       {"topics": [{"name": topic, "partition_indexes": [0, 5]}]})
    p0, p5 = producers["topics"][0]["partitions"]
    assert p5["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    [active] = p0["active_producers"]
    assert (active["producer_id"], active["producer_epoch"], active["last_sequence"]) == (pid, epoch, 0)
    assert active["current_txn_start_offset"] == 0
    # Kafka's broker-to-broker form: verify-only checks which partitions the transaction holds.
    verified = c.call(ApiKey.ADD_PARTITIONS_TO_TXN, 4, {"transactions": [{
        "transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "verify_only": True,
        "topics": [{"name": topic, "partitions": [0]}]}]})
    [result] = verified["results_by_transaction"]
    assert result["topic_results"][0]["results_by_partition"][0]["partition_error_code"] == 0
    assert end(c, txn_id, pid, epoch, commit=True) == 0
    verified = c.call(ApiKey.ADD_PARTITIONS_TO_TXN, 5, {"transactions": [{
        "transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "verify_only": True,
        "topics": [{"name": topic, "partitions": [0]}]}]})
    codes = verified["results_by_transaction"][0]["topic_results"][0]["results_by_partition"]
    assert codes[0]["partition_error_code"] == ErrorCode.INVALID_TXN_STATE
    c.close()
