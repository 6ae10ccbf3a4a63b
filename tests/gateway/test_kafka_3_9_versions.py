"""The versions added to match Kafka 3.9's ranges, over the wire: each answers as Kafka does."""

from __future__ import annotations

import uuid

from flexlog.core import record_batch
from flexlog.gateway.protocol import ApiKey, ErrorCode
from wire_client import WireClient


def topic_with_records(client: WireClient, count: int) -> tuple[str, bytes]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = client.call(ApiKey.CREATE_TOPICS, 7, {"topics": [
        {"name": name, "num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []}],
        "timeout_ms": 10_000, "validate_only": False})
    created = body["topics"][0]
    assert created["error_code"] == ErrorCode.NONE
    client.call(ApiKey.PRODUCE, 11, {"transactional_id": None, "acks": -1, "timeout_ms": 10_000,
                                     "topic_data": [{"name": name, "partition_data": [
                                         {"index": 0, "records": record_batch.build(
                                             [b"r%d" % i for i in range(count)])}]}]})
    return name, created["topic_id"]


def fetch_v17(client: WireClient, topic_id: bytes) -> dict:
    return client.call(ApiKey.FETCH, 17, {
        "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0, "session_id": 0,
        "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
        "topics": [{"topic_id": topic_id, "partitions": [
            {"partition": 0, "fetch_offset": 1, "partition_max_bytes": 1 << 20}]}]})


def test_fetch_v17_names_topics_by_id(bootstrap):
    client = WireClient(bootstrap)
    try:
        _, topic_id = topic_with_records(client, 3)
        answer = fetch_v17(client, topic_id)["responses"][0]
        assert answer["topic_id"] == topic_id
        part = answer["partitions"][0]
        assert part["error_code"] == ErrorCode.NONE and part["high_watermark"] == 3
        assert [r.value for r in record_batch.decode(part["records"])] == [b"r0", b"r1", b"r2"]
        unknown = uuid.uuid4().bytes
        answer = fetch_v17(client, unknown)["responses"][0]
        assert answer["topic_id"] == unknown
        assert answer["partitions"][0]["error_code"] == ErrorCode.UNKNOWN_TOPIC_ID
    finally:
        client.close()


def test_list_offsets_v9_local_and_tiered_specs(bootstrap):
    client = WireClient(bootstrap)
    try:
        name, _ = topic_with_records(client, 4)
        client.call(ApiKey.DELETE_RECORDS, 2, {"topics": [{"name": name, "partitions": [
            {"partition_index": 0, "offset": 1}]}], "timeout_ms": 10_000})

        def offset(spec: int, version: int = 9) -> tuple[int, int]:
            wanted = [{"name": name, "partitions": [{"partition_index": 0, "timestamp": spec}]}]
            body = client.call(ApiKey.LIST_OFFSETS, version,
                               {"replica_id": -1, "isolation_level": 0, "topics": wanted})
            part = body["topics"][0]["partitions"][0]
            return part["error_code"], part["offset"]

        assert offset(-4) == (ErrorCode.NONE, 1)  # earliest local: every tier is local
        assert offset(-5) == (ErrorCode.NONE, -1)  # latest tiered: no remote storage
        assert offset(-4, version=7)[0] == ErrorCode.INVALID_REQUEST
    finally:
        client.close()


def test_find_coordinator_v6_and_old_offset_versions(bootstrap):
    client = WireClient(bootstrap)
    try:
        name, _ = topic_with_records(client, 2)
        body = client.call(ApiKey.FIND_COORDINATOR, 6, {"key_type": 0, "coordinator_keys": ["g", "h"]})
        assert [c["error_code"] for c in body["coordinators"]] == [ErrorCode.NONE] * 2
        body = client.call(ApiKey.FIND_COORDINATOR, 6, {"key_type": 2, "coordinator_keys": ["g"]})
        assert body["coordinators"][0]["error_code"] == ErrorCode.INVALID_REQUEST  # share groups
        group = f"g-{uuid.uuid4().hex[:8]}"
        body = client.call(ApiKey.OFFSET_COMMIT, 1, {
            "group_id": group, "generation_id_or_member_epoch": -1, "member_id": "",
            "topics": [{"name": name, "partitions": [
                {"partition_index": 0, "committed_offset": 2, "commit_timestamp": -1,
                 "committed_metadata": "m"}]}]})
        assert body["topics"][0]["partitions"][0]["error_code"] == ErrorCode.NONE
        body = client.call(ApiKey.OFFSET_FETCH, 1, {"group_id": group, "topics": [
            {"name": name, "partition_indexes": [0]}]})
        assert body["topics"][0]["partitions"][0]["committed_offset"] == 2
        body = client.call(ApiKey.OFFSET_FOR_LEADER_EPOCH, 0, {"topics": [
            {"topic": name, "partitions": [{"partition": 0, "leader_epoch": 0}]}]})
        assert body["topics"][0]["partitions"][0]["end_offset"] == 2
    finally:
        client.close()
